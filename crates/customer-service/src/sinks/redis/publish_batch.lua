-- One batch on a single Redis server (see redis.rs, PUBLISH_BATCH): SET NX of each event's
-- 24 h key, and only for a new one PUBLISH and XADD. Returns how many events were new.
local published = 0
for i = 3, #KEYS do
  local base = 4 + (i - 3) * 3
  local event_type, event_id, envelope = ARGV[base + 1], ARGV[base + 2], ARGV[base + 3]
  if redis.call('SET', KEYS[i], envelope, 'EX', ARGV[1], 'NX') then
    redis.call('PUBLISH', ARGV[2], envelope)
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], '*',
               'type', event_type, 'id', event_id, 'event', envelope)
    published = published + 1
  end
end
return published
