# The orch image: the controller (`orch controller --kubernetes`, the Helm chart's default command)
# and the agent that wraps every attempt (`orch agent --grace G -- CMD`). Job images that are not
# built FROM this one need orch installed too (pip install orch), so the agent can run.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY orchestrator ./orchestrator
COPY providers ./providers
COPY vocab ./vocab
COPY migrations ./migrations
RUN python -m pip install --no-cache-dir --prefix=/install ".[all]"

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    ORCH_HOME=/tmp/orch
COPY --from=build /install /usr/local
RUN groupadd --gid 10001 orch && useradd --uid 10001 --gid orch --home-dir /tmp/orch --no-create-home orch
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["orch"]
CMD ["controller", "--kubernetes"]
