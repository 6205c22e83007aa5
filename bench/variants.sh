# Sourced by bench/run: the JWT route with one thing added, so the cost of that thing sits
# beside the plain `jwt` configuration (issues 13 and 15):
#
#   jwt_https     the JWT route to an HTTPS upstream (HTTP/1.1, verified against the
#                 benchmark's CA; the TLS upstream of bench/upstreams.sh)
#   jwt_h2c       the JWT route to an h2c upstream (HTTP/2 by prior knowledge)
#   jwt_rl_local  the JWT route with an in-process rate limit that never limits (10^6/s,
#                 the most a limit may allow: one a microsecond)
#   jwt_rl_redis  the same limit with `store: redis` on the machine's Redis (127.0.0.1:6379,
#                 a key prefix of this run's own); skipped with the reason when Redis does
#                 not answer PING
#   jwt_trace     the JWT route with telemetry.tracing on, sample_ratio 1.0, exporting over
#                 OTLP/HTTP to a stand-in collector on 127.0.0.1 (nginx answering 200)
#
# The first four are routes of one extra instance (tgx), the last a second one (tgt: tracing
# is process-wide). Both run the JWT instance's configuration (same issuer, key and store, so
# the same tokens validate) on ports of their own, plus the routes or telemetry above. Each
# passes the same validation check as `jwt` before it is measured.
TGX_PORT=$((PORT_BASE + 24))
TGX_ADMIN_PORT=$((PORT_BASE + 25))
TGT_PORT=$((PORT_BASE + 26))
TGT_ADMIN_PORT=$((PORT_BASE + 27))
OTLP_SINK_PORT=$((PORT_BASE + 28))
REDIS_HOST=127.0.0.1
REDIS_PORT=6379
VARIANTS=(jwt_https jwt_h2c jwt_rl_local jwt_rl_redis jwt_trace)

CONFIGS+=("${VARIANTS[@]}")
LABEL[jwt_https]="Tollgate, JWT required, HTTPS upstream (h1)"
LABEL[jwt_h2c]="Tollgate, JWT required, h2c upstream"
LABEL[jwt_rl_local]="Tollgate, JWT required, local rate limit"
LABEL[jwt_rl_redis]="Tollgate, JWT required, Redis rate limit"
LABEL[jwt_trace]="Tollgate, JWT required, tracing on (ratio 1.0)"

# redis_ping: 0 when Redis at REDIS_HOST:REDIS_PORT answers +PONG; else prints why.
redis_ping() {
    local reply
    reply=$(timeout 3 bash -c "exec 3<>/dev/tcp/$REDIS_HOST/$REDIS_PORT && printf 'PING\r\n' >&3 && read -r -t 2 line <&3 && printf '%s' \"\$line\"" 2>/dev/null | tr -d '\r') || true
    case $reply in
        +PONG) return 0 ;;
        "") echo "Redis at $REDIS_HOST:$REDIS_PORT is not reachable" ;;
        *) echo "Redis at $REDIS_HOST:$REDIS_PORT answered PING with '$reply'" ;;
    esac
    return 1
}

# variant_config NAME PORT ADMIN_PORT: the JWT instance's configuration on other ports.
variant_config() {
    local name=$1 port=$2 admin=$3
    render "$BENCH/tollgate/gateway.yaml.tmpl" "$WORK/$name.yaml" WORK="$WORK/tg" TG_PORT="$TG_PORT" \
        TG_ADMIN_PORT="$admin" UPSTREAM_PORT="$UPSTREAM_PORT" ACCESS_FORMAT=jwt KEY_FILE="$KEY_FILE"
    sed -i "s|^  http: 127.0.0.1:$TG_PORT\$|  http: 127.0.0.1:$port|" "$WORK/$name.yaml"
}

# metric_sum PORT NAME: the sum of a counter's series on an admin port's /metrics.
metric_sum() {
    http GET "$1" /metrics "" "" "" | sed 1d | awk -v m="$2" '$1 == m || index($1, m "{") == 1 { s += $NF } END { printf "%.0f", s }'
}

setup_variants() {
    local c
    if [ -n "${SKIP[jwt]:-}" ]; then
        for c in "${VARIANTS[@]}"; do SKIP[$c]="needs the JWT configuration: ${SKIP[jwt]}"; done
        return 0
    fi
    # A run of BENCH_ONLY without any variant starts none of them.
    if [ -n "${BENCH_ONLY:-}" ]; then
        local any=0
        for c in "${VARIANTS[@]}"; do case " $BENCH_ONLY " in *" $c "*) any=1 ;; esac; done
        [ $any = 1 ] || return 0
    fi
    local why
    if why=$(redis_ping); then
        REDIS_PREFIX=tollgate-bench-$$-$(date +%s)
    else
        SKIP[jwt_rl_redis]=$why
    fi
    # The HTTPS and h2c upstreams are bench/upstreams.sh's; without openssl there are none.
    if [ "${SKIP[https_h1]:-}" = "openssl is not installed" ]; then
        SKIP[jwt_https]="no TLS upstream: openssl is not installed"
        SKIP[jwt_h2c]="no h2c upstream: openssl is not installed"
    fi

    # tgx: one route per transport or limit, each a copy of the JWT route.
    variant_config tgx "$TGX_PORT" "$TGX_ADMIN_PORT"
    {
        echo
        echo "  # bench/variants.sh: the JWT route with one thing added each."
        if [ -z "${SKIP[jwt_https]:-}" ]; then
            echo "  - name: jwt-https"
            echo "    path: /jwt-https"
            echo "    upstream:"
            echo "      targets: [https://127.0.0.1:$TLS_UPSTREAM_PORT]"
            echo "      protocol: h1"
            echo "      tls: { ca_file: $WORK/bench-ca.pem }"
            echo "    auth: required"
        fi
        if [ -z "${SKIP[jwt_h2c]:-}" ]; then
            echo "  - name: jwt-h2c"
            echo "    path: /jwt-h2c"
            echo "    upstream: { targets: [\"http://127.0.0.1:$H2C_UPSTREAM_PORT\"], protocol: h2c }"
            echo "    auth: required"
        fi
        echo "  - name: jwt-rl-local"
        echo "    path: /jwt-rl-local"
        echo "    upstream: http://127.0.0.1:$UPSTREAM_PORT"
        echo "    auth: required"
        echo "    rate_limit: { requests: 1000000, per: 1s, key: user, store: local }"
        if [ -z "${SKIP[jwt_rl_redis]:-}" ]; then
            echo "  - name: jwt-rl-redis"
            echo "    path: /jwt-rl-redis"
            echo "    upstream: http://127.0.0.1:$UPSTREAM_PORT"
            echo "    auth: required"
            echo "    rate_limit: { requests: 1000000, per: 1s, key: user, store: redis }"
            echo
            echo "# The default local_budget (1): one Redis round trip per request, exact."
            echo "rate_limit_store:"
            echo "  url: redis://$REDIS_HOST:$REDIS_PORT/0"
            echo "  prefix: $REDIS_PREFIX"
            echo "  on_error: fail_closed"
        fi
    } >>"$WORK/tgx.yaml"
    start_tollgate tgx "$TGX_PORT" "$BIN" tg

    # tgt: the JWT instance with tracing on, exporting to the stand-in collector.
    start_nginx otlp otlp-sink.conf.tmpl 1 "$OTLP_SINK_PORT"
    variant_config tgt "$TGT_PORT" "$TGT_ADMIN_PORT"
    {
        echo
        echo "# bench/variants.sh: every request traced, exported to the stand-in collector."
        echo "telemetry:"
        echo "  tracing:"
        echo "    otlp_endpoint: http://127.0.0.1:$OTLP_SINK_PORT"
        echo "    protocol: http/protobuf"
        echo "    sample_ratio: 1.0"
        echo "    service_name: tollgate-bench"
    } >>"$WORK/tgt.yaml"
    start_tollgate tgt "$TGT_PORT" "$BIN" tg

    local path port prefix
    for c in "${VARIANTS[@]}"; do
        [ -z "${SKIP[$c]:-}" ] || continue
        case $c in
            jwt_trace) port=$TGT_PORT prefix=/protected; CPU_PIDS[$c]=$PID_tgt ;;
            *) port=$TGX_PORT prefix=/${c//_/-}; CPU_PIDS[$c]=$PID_tgx ;;
        esac
        URL[$c]="http://127.0.0.1:$port$prefix/api/item"
        HDR[$c]="Authorization: Bearer $JWT_TOKEN"
        PROBE_SKIP=""
        if ! probe "$port" "$prefix/api/item" "$JWT_TOKEN"; then
            SKIP[$c]=$PROBE_SKIP
            FAILED+=("$c: $PROBE_SKIP")
            continue
        fi
        validate "$c" "$port" "$prefix" || true
    done
    if [ -z "${SKIP[jwt_trace]:-}" ]; then
        # The spans of the probe and the validation check reach the collector within the
        # exporter's 1 s batch interval, or tracing is not what is measured.
        local i n=0
        for i in $(seq 1 30); do
            n=$(metric_sum "$TGT_ADMIN_PORT" tollgate_trace_spans_exported_total)
            [ "${n:-0}" -gt 0 ] && break
            sleep 0.2
        done
        if [ "${n:-0}" -gt 0 ]; then
            log "tracing: $n spans exported to the stand-in collector before the rounds"
        else
            SKIP[jwt_trace]="no span reached the stand-in collector within 6 s (tollgate_trace_spans_exported_total is ${n:-unreadable})"
            FAILED+=("jwt_trace: ${SKIP[jwt_trace]}")
        fi
    fi
}

# After the rounds: what the exporter did, and the Redis keys of this run removed.
VARIANT_NOTES=""
finish_variants() {
    if [ -n "${PID_tgt:-}" ] && [ -z "${SKIP[jwt_trace]:-}" ]; then
        local exported dropped posts
        exported=$(metric_sum "$TGT_ADMIN_PORT" tollgate_trace_spans_exported_total)
        dropped=$(metric_sum "$TGT_ADMIN_PORT" tollgate_trace_spans_dropped_total)
        posts=$(grep -c '^POST /v1/traces 200' "$WORK/otlp.access.log" 2>/dev/null || echo 0)
        VARIANT_NOTES+="- Tracing (\`jwt_trace\`): $exported spans exported in $posts OTLP/HTTP exports answered 200 by the stand-in collector, $dropped dropped (\`tollgate_trace_spans_dropped_total\`, queue full or export failed) over the whole run."$'\n'
        log "tracing: $exported spans exported in $posts exports, $dropped dropped"
    fi
    if [ -n "${REDIS_PREFIX:-}" ] && [ -z "${SKIP[jwt_rl_redis]:-}" ]; then
        local limited
        limited=$(http GET "$TGX_ADMIN_PORT" /metrics "" "" "" | sed 1d | grep '^tollgate_rate_limit_decisions_total{' | grep 'decision="limited"' | awk '{ s += $NF } END { printf "%.0f", s }')
        VARIANT_NOTES+="- Rate limits: ${limited:-0} requests limited over the run (the limits are 10^6/s: they are there for their cost only); Redis keys under \`$REDIS_PREFIX:\`, which expire by themselves."$'\n'
        if command -v redis-cli >/dev/null; then
            redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" --scan --pattern "$REDIS_PREFIX:*" 2>/dev/null |
                xargs -r redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" del >/dev/null 2>&1 || true
        fi
    fi
}
