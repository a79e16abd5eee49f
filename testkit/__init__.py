"""Processes started for lakehub's tests and benchmarks (never imported by product code).

:mod:`testkit.node` is a real one-node Kubernetes cluster (etcd, the control plane,
containerd, kubelet, kube-proxy, CoreDNS, local-path-provisioner) run as host processes.
"""
