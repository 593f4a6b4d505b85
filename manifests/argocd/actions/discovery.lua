-- Argo CD resource actions for modeldeploy.io/ModelDeployment: which ones the UI offers, and when.
-- promote, promote-full and abort act on a canary in progress; retry on a revision that was rolled back.
local actions = {}
local canary = obj.status ~= nil and obj.status.canary ~= nil
local rejected = obj.status ~= nil and obj.status.rejectedRevision ~= nil
actions["promote"] = {["disabled"] = not canary}
actions["promote-full"] = {["disabled"] = not canary}
actions["abort"] = {["disabled"] = not canary}
actions["retry"] = {["disabled"] = not rejected}
return actions
