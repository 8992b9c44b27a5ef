-- One batch on a Redis Cluster, in the stream's slot (see redis.rs): an event is XADDed and
-- PUBLISHed only if ZADD NX of its id into the last 24 h's ids added it. Returns how many
-- events were new.
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - tonumber(ARGV[1]) * 1000)
local published = 0
for base = 5, #ARGV, 3 do
  local event_type, event_id, envelope = ARGV[base], ARGV[base + 1], ARGV[base + 2]
  if redis.call('ZADD', KEYS[3], 'NX', now, event_id) == 1 then
    redis.call('PUBLISH', ARGV[2], envelope)
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], '*',
               'type', event_type, 'id', event_id, 'event', envelope)
    published = published + 1
  end
end
return published
