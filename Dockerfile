# syntax=docker/dockerfile:1
# nfq-mip6 Home Agent image (docs/operations.md, "Container").
#
#   docker build -t nfq-mip6 .                       # any Docker/BuildKit, Debian bookworm base
#   scripts/container-build.sh                       # our CI machines: podman, local base image
#
# Runs as root with only CAP_NET_ADMIN and CAP_NET_RAW (NFQUEUE, ip6tables, netlink, raw
# sockets); set net.ipv6.conf.all.forwarding=1 on the host or with --sysctl. A CN or MN adds
# CAP_BPF for the route-optimization tc programs (built in the build stage; without CAP_BPF
# it falls back to NFQUEUE and says why, docs/route-optimization.md).
ARG BASE=debian:bookworm-slim

# ---- stage 1: build the NetfilterQueue wheel and the virtual environment --------------------
FROM ${BASE} AS build
ENV DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
        python3 python3-venv python3-dev gcc libc6-dev libnetfilter-queue-dev ca-certificates \
        clang libbpf-dev \
 && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/venv
# The dependencies first (their layer survives source edits), with the [cluster] extra
# (etcd3gw: an HA member of a cluster, deploy/cluster/). A TLS-intercepting proxy's CA
# can be passed as the build secret "extra_ca"; it never lands in a layer.
COPY pyproject.toml README.md /opt/nfq-mip6/
RUN --mount=type=secret,id=extra_ca,required=false \
    if [ -s /run/secrets/extra_ca ]; then export PIP_CERT=/run/secrets/extra_ca; fi \
 && /opt/venv/bin/python -c 'import tomllib; p = tomllib.load(open("/opt/nfq-mip6/pyproject.toml", "rb"))["project"]; print("\n".join(p["dependencies"] + p["optional-dependencies"]["cluster"]))' > /tmp/requirements.txt \
 && /opt/venv/bin/pip install "setuptools>=68" wheel -r /tmp/requirements.txt
# The project itself (nfq_mip6/, rules/: see .dockerignore), installed editable from
# /opt/nfq-mip6 so that the runtime finds rules/ beside the package, as in a source checkout.
COPY . /opt/nfq-mip6/
# The route-optimization tc programs are compiled here, never by the running agent.
RUN bash /opt/nfq-mip6/scripts/build-bpf.sh
RUN /opt/venv/bin/pip install --no-deps --no-build-isolation -e /opt/nfq-mip6 \
 && /opt/venv/bin/python -m compileall -q /opt/nfq-mip6/nfq_mip6 \
 && /opt/venv/bin/nfq-mip6 --version

# ---- stage 2: slim runtime -------------------------------------------------------------------
FROM ${BASE}
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
        python3 libnetfilter-queue1 iproute2 iptables tini libbpf1 \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*
COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/nfq-mip6 /opt/nfq-mip6
COPY deploy/nfq-mip6-ha.toml /etc/nfq-mip6/nfq-mip6.toml
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    NFQ_MIP6_AGENT__METRICS_LISTEN=0.0.0.0:10135
LABEL org.opencontainers.image.title="nfq-mip6" \
      org.opencontainers.image.description="Mobile IPv6 (RFC 6275) Home Agent for Linux, NFQUEUE based" \
      org.opencontainers.image.licenses="GPL-2.0-or-later"
EXPOSE 10135/tcp
HEALTHCHECK --interval=30s --timeout=5s CMD ["nfq-mip6", "stats"]
ENTRYPOINT ["tini", "--", "nfq-mip6"]
CMD ["run", "--config", "/etc/nfq-mip6/nfq-mip6.toml"]
