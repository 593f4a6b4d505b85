-- Argo CD action "promote-full": the annotation that `kubectl modeldeploy promote --full` writes. The operator handles each id
-- once; the resourceVersion changes with every write, so each use of the action is a new request.
local id = "argocd-" .. (obj.metadata.resourceVersion or "0")
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
obj.metadata.annotations["modeldeploy.io/action"] = '{"action": "promote-full", "id": "' .. id .. '"}'
return obj
