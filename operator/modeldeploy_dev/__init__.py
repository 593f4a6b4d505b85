"""modeldeploy's development tools: a local Kubernetes control plane built from Go modules, a real data plane
for analysis drills, the demo, and the end-to-end test harness.

None of it ships in the operator image: the runtime package `modeldeploy` never imports this one.
"""
