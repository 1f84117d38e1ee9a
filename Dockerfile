# ticket-gateway: one image for `ticketgw serve` and every admin command.
#
#   docker build -t ticket-gateway .
#   docker run --rm -e TICKETGW_CONFIG=/etc/ticketgw/ticketgw.toml \
#       -v ./ticketgw.toml:/etc/ticketgw/ticketgw.toml:ro ticket-gateway
#
# The entrypoint migrates the database (`ticketgw db upgrade`) and then runs `ticketgw serve`.
# See docs/admin.md ("Docker Compose quick start") and docker-compose.yml.
FROM python:3.11.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# A dedicated user and its data directory (attachments live in /var/lib/ticketgw/attachments).
RUN groupadd --system --gid 10001 ticketgw \
    && useradd --system --uid 10001 --gid ticketgw --home-dir /var/lib/ticketgw \
               --no-create-home --shell /usr/sbin/nologin ticketgw \
    && install -d -o ticketgw -g ticketgw -m 0750 /var/lib/ticketgw

# The dependencies exactly as locked (requirements.lock, written by scripts/lock; every file
# checked against its hash), then the package itself (not editable) without resolving
# anything again. `tzdata` in the lock gives zoneinfo the full IANA database: the slim
# image's system copy lacks the legacy names that [tickets] timezone may use.
WORKDIR /usr/src/ticket-gateway
COPY requirements.lock ./
RUN pip install --require-hashes -r requirements.lock
COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY mail_templates ./mail_templates
RUN pip install --no-deps . \
    && cd / && rm -rf /usr/src/ticket-gateway

COPY deploy/docker/entrypoint.sh /usr/local/bin/ticketgw-entrypoint
RUN chmod 0755 /usr/local/bin/ticketgw-entrypoint

USER ticketgw
WORKDIR /var/lib/ticketgw
VOLUME ["/var/lib/ticketgw"]

# 2525: SMTP listener ([inbound] smtp), 8080: web view, /healthz, /metrics ([web] listen).
# Inside a container both must listen on 0.0.0.0, not the default 127.0.0.1.
EXPOSE 2525 8080

ENTRYPOINT ["ticketgw-entrypoint"]
CMD ["serve"]
