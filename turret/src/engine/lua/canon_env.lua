local shared, load, select, setmetatable = ...
local meta = {__index = shared}
return function()
  local env = setmetatable({}, meta)
  env._G = env
  env.load = function(...)
    if select("#", ...) < 4 then
      local chunk, name, mode = ...
      return load(chunk, name, mode, env)
    end
    return load(...)
  end
  return env
end
