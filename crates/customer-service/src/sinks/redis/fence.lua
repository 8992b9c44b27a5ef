-- The relay lease's fence (see redis.rs): KEYS[2] holds the newest epoch that published,
-- ARGV[4] is this relay's (empty: unfenced). A superseded epoch gets a FENCED error before
-- anything is published.
local epoch = tonumber(ARGV[4])
if epoch then
  local newest = tonumber(redis.call('GET', KEYS[2]) or '0')
  if epoch < newest then
    return redis.error_reply('FENCED relay lease epoch ' .. ARGV[4] .. ' is superseded')
  end
  if epoch > newest then
    redis.call('SET', KEYS[2], ARGV[4])
  end
end
