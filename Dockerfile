# Multi-stage build: wheels are built in one stage, the runtime image only installs them and runs
# as a non-root user. The same image runs `migrate`, `dispatch`, `webhook` and `sandbox`.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY common common
COPY dispatch_service dispatch_service
COPY webhook_service webhook_service
COPY sandbox sandbox
COPY cli cli
COPY console_service console_service
COPY migrations migrations
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
RUN useradd --create-home --uid 10001 invites
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER invites
WORKDIR /home/invites
EXPOSE 50051 8080 8070 9101
CMD ["python", "-m", "dispatch_service"]
