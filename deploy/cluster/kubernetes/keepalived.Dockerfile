# The keepalived sidecar of the Kubernetes example (README.md in deploy/cluster): the project
# image plus keepalived (VRRPv3), radvd (the virtual HA's Router Advertisements on MASTER) and
# procps (sysctl, for nfq-mip6-vmac). The notify and track scripts call the nfq-mip6 CLI of
# this image, which talks to the agent container through the control socket they share.
#   podman build -t localhost/nfq-mip6-keepalived:dev -f deploy/cluster/kubernetes/keepalived.Dockerfile .
ARG IMAGE=localhost/nfq-mip6:dev
FROM ${IMAGE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends keepalived radvd procps \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*
ENTRYPOINT ["keepalived", "--dont-fork", "--log-console", "--log-detail", "--vrrp", \
            "--use-file", "/etc/keepalived/keepalived.conf"]
