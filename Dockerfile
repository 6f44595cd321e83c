# CodeBlue worker/API image: `docker build -t codeblue:1.0.0 .`
# Stage 1 builds the virtualenv (the product only: no drill world, sandbox/, and none of its
# [drill] dependencies); stage 2 fetches a pinned helm; the runtime stage runs as
# an unprivileged user with nothing but the venv, helm and the code.

ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/codeblue
COPY pyproject.toml README.md ./
COPY domain domain
COPY activities activities
COPY workflows workflows
COPY worker worker
COPY starters starters
RUN /opt/codeblue/bin/pip install --upgrade pip \
 && /opt/codeblue/bin/pip install '.[tracing]'

FROM ${PYTHON_IMAGE} AS helm
ARG HELM_VERSION=v3.16.4
ARG TARGETARCH=amd64
ADD https://get.helm.sh/helm-${HELM_VERSION}-linux-${TARGETARCH}.tar.gz /tmp/helm.tar.gz
ADD https://get.helm.sh/helm-${HELM_VERSION}-linux-${TARGETARCH}.tar.gz.sha256sum /tmp/helm.sha256sum
RUN cd /tmp && echo "$(cut -d' ' -f1 helm.sha256sum)  helm.tar.gz" | sha256sum -c - \
 && tar -xzf helm.tar.gz \
 && install -m 0755 linux-${TARGETARCH}/helm /usr/local/bin/helm

FROM ${PYTHON_IMAGE} AS runtime
# the worker's build ID in its Worker Deployment (README, "Upgrades"): `--build-arg
# CODEBLUE_BUILD_ID=1.0.0+$(git rev-parse --short=12 HEAD)`; empty: the package version
ARG CODEBLUE_BUILD_ID=
ENV CODEBLUE_BUILD_ID=${CODEBLUE_BUILD_ID}
LABEL org.opencontainers.image.title="codeblue" \
      org.opencontainers.image.description="Incident-response runbook as durable Temporal workflows"
RUN groupadd --system --gid 10001 codeblue \
 && useradd --system --uid 10001 --gid codeblue --home-dir /home/codeblue --create-home codeblue \
 && install -d -o codeblue -g codeblue /var/lib/codeblue
COPY --from=build /opt/codeblue /opt/codeblue
COPY --from=helm /usr/local/bin/helm /usr/local/bin/helm
ENV PATH=/opt/codeblue/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/home/codeblue \
    CODEBLUE_CONFIG=/etc/codeblue/codeblue.yaml
USER 10001:10001
WORKDIR /home/codeblue
EXPOSE 8000 9464
ENTRYPOINT ["codeblue"]
CMD ["worker"]
