# Sourced by bench/run: the HTTPS and h2c upstream configurations (issue 13). Adds
# https_h1, https_h2 and h2c to CONFIGS (and TRANSPORTS: bench/stats.py reports them
# beside the plain public route); their own nginx upstream (TLS + h2c) and their
# own Tollgate instance, on ports clear of the ones bench/run assigns.
TLS_UPSTREAM_PORT=$((PORT_BASE + 20))
H2C_UPSTREAM_PORT=$((PORT_BASE + 21))
TGU_PORT=$((PORT_BASE + 22))
TGU_ADMIN_PORT=$((PORT_BASE + 23))

TRANSPORTS=(https_h1 https_h2 h2c)
CONFIGS+=("${TRANSPORTS[@]}")
LABEL[https_h1]="Tollgate, public route, HTTPS upstream (h1)"
LABEL[https_h2]="Tollgate, public route, HTTPS upstream (h2)"
LABEL[h2c]="Tollgate, public route, h2c upstream"

setup_upstream_transports() {
    local c
    if ! command -v openssl >/dev/null; then
        for c in https_h1 https_h2 h2c; do SKIP[$c]="openssl is not installed"; done
        return 0
    fi
    # A CA and a 127.0.0.1 server certificate signed by it.
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -subj /CN=bench-ca -keyout "$WORK/bench-ca.key" -out "$WORK/bench-ca.pem" 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=127.0.0.1 \
        -keyout "$WORK/upstream-tls.key" -out "$WORK/upstream-tls.csr" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >"$WORK/upstream-tls.ext"
    openssl x509 -req -in "$WORK/upstream-tls.csr" -CA "$WORK/bench-ca.pem" -CAkey "$WORK/bench-ca.key" \
        -CAcreateserial -days 2 -extfile "$WORK/upstream-tls.ext" -out "$WORK/upstream-tls.crt" 2>/dev/null

    # start_nginx's variables do not cover this template's two ports, so it is rendered
    # and started here the same way.
    local user=""
    [ "$(id -u)" = 0 ] && user="user root;"
    mkdir -p "$WORK/upstreams.tmp"
    render "$BENCH/nginx/common.conf.tmpl" "$WORK/upstreams.common.conf" WORK="$WORK" NAME=upstreams \
        WORKERS=1 USER="$user"
    render "$BENCH/nginx/upstream-transports.conf.tmpl" "$WORK/upstreams.conf" WORK="$WORK" \
        NAME=upstreams TLS_UPSTREAM_PORT="$TLS_UPSTREAM_PORT" H2C_UPSTREAM_PORT="$H2C_UPSTREAM_PORT"
    "$NGINX" -p "$WORK" -c "$WORK/upstreams.conf" -e "$WORK/upstreams.error.log" >"$WORK/upstreams.out" 2>&1 &
    local pid=$!
    PIDS+=("$pid")
    wait_port "$TLS_UPSTREAM_PORT" "$pid" "nginx (TLS and h2c upstream)"
    wait_port "$H2C_UPSTREAM_PORT" "$pid" "nginx (TLS and h2c upstream)"

    mkdir -p "$WORK/tgu"
    render "$BENCH/tollgate/upstreams.yaml.tmpl" "$WORK/tgu.yaml" WORK="$WORK/tgu" TG_PORT="$TGU_PORT" \
        TG_ADMIN_PORT="$TGU_ADMIN_PORT" TLS_UPSTREAM_PORT="$TLS_UPSTREAM_PORT" \
        H2C_UPSTREAM_PORT="$H2C_UPSTREAM_PORT" CA_FILE="$WORK/bench-ca.pem"
    start_tollgate tgu "$TGU_PORT"
    for c in https_h1 https_h2 h2c; do
        local path=/${c//_/-}
        URL[$c]="http://127.0.0.1:$TGU_PORT$path/api/item"
        CPU_PIDS[$c]=$PID_tgu
        local status
        status=$(http GET "$TGU_PORT" "$path/api/item" "" "" "" | head -1) || true
        [ "$status" = 200 ] || SKIP[$c]="GET $path/api/item answered ${status:-nothing}, not 200"
    done
}
