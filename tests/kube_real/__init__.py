"""The `kube` test tier: orch's controller and kubernetes provider against a real kube-apiserver."""
