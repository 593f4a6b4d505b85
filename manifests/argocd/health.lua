-- Argo CD health check for modeldeploy.io/ModelDeployment.
-- Install: argocd-cm key `resource.customizations.health.modeldeploy.io_ModelDeployment` (see README).
local hs = {}
if obj.status == nil or obj.status.observedGeneration == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to report a status"
  return hs
end
if obj.status.observedGeneration < obj.metadata.generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. obj.metadata.generation
  return hs
end
local conditions = {}
if obj.status.conditions ~= nil then
  for _, condition in ipairs(obj.status.conditions) do
    conditions[condition.type] = condition
  end
end
local function describe(condition)
  if condition.message ~= nil and condition.message ~= "" then
    return condition.reason .. ": " .. condition.message
  end
  return condition.reason
end
local degraded = conditions["Degraded"]
if degraded ~= nil and degraded.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(degraded)
  return hs
end
local paused = conditions["Paused"]
if paused ~= nil and paused.status == "True" then
  hs.status = "Suspended"
  hs.message = describe(conditions["Ready"] or paused)
  return hs
end
local ready = conditions["Ready"]
if ready ~= nil and ready.status == "True" and ready.observedGeneration == obj.metadata.generation then
  hs.status = "Healthy"
  hs.message = describe(ready)
  return hs
end
hs.status = "Progressing"
if ready ~= nil then
  hs.message = describe(ready)
else
  hs.message = "Waiting for the Ready condition"
end
return hs
