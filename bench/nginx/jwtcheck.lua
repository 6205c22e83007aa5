-- The small bearer check a user would write for nginx with lua-nginx-module, luaossl
-- (RSA), lua-cjson and lua-resty-lrucache: the same RS256 tokens Tollgate validates,
-- with the algorithm and kid pinned, signature, iss, aud and exp checked (30 s of clock
-- skew, as Tollgate), then the identity claims set as the headers Tollgate injects
-- (set_header replaces inbound copies; a missing claim removes the header).
--
-- With cache_size > 0 each worker keeps verified tokens' claims in an LRU, keyed by the
-- token itself, until the token's exp; exp is checked again on every hit. With 0 every
-- request verifies the signature.
local cjson = require "cjson.safe"
local pkey = require "openssl.pkey"
local digest = require "openssl.digest"
local lrucache = require "resty.lrucache"

local M = {}
local SKEW = 30
local key, kid, issuer, audience, cache_size, cache

function M.init(opts)
    local f = assert(io.open(opts.public_key, "rb"))
    key = assert(pkey.new(f:read("*a"), "PEM"))
    f:close()
    kid, issuer, audience, cache_size = opts.kid, opts.issuer, opts.audience, opts.cache_size
end

-- The LRU is made in each worker, after the fork: one per worker, not shared.
function M.init_worker()
    if cache_size > 0 then
        cache = assert(lrucache.new(cache_size))
    end
end

local function b64url(s)
    local n = #s % 4
    if n == 1 then return nil end
    s = s:gsub("-", "+"):gsub("_", "/")
    if n == 2 then s = s .. "==" elseif n == 3 then s = s .. "=" end
    return ngx.decode_base64(s)
end

local function refuse()
    ngx.header["WWW-Authenticate"] = 'Bearer error="invalid_token"'
    return ngx.exit(ngx.HTTP_UNAUTHORIZED)
end

local function has_audience(aud)
    if aud == audience then return true end
    if type(aud) == "table" then
        for _, a in ipairs(aud) do
            if a == audience then return true end
        end
    end
    return false
end

-- The claims of a token whose signature and claims check out, else nil.
local function verify(token, now)
    local h, p, s = token:match("^([%w_-]+)%.([%w_-]+)%.([%w_-]+)$")
    if not h then return nil end
    local header = cjson.decode(b64url(h) or "")
    if type(header) ~= "table" or header.alg ~= "RS256" or header.kid ~= kid then return nil end
    local sig = b64url(s)
    if not sig then return nil end
    local d = digest.new("sha256")
    d:update(h, ".", p)
    local ok, good = pcall(key.verify, key, sig, d)
    if not ok or not good then return nil end
    local claims = cjson.decode(b64url(p) or "")
    if type(claims) ~= "table" or claims.iss ~= issuer or not has_audience(claims.aud)
        or type(claims.exp) ~= "number" or type(claims.sub) ~= "string" then
        return nil
    end
    if claims.exp + SKEW <= now then return nil end
    return claims
end

local function header_value(v)
    if type(v) == "string" then return v end
    return nil
end

function M.check()
    local auth = ngx.var.http_authorization
    local token = auth and auth:match("^Bearer +(%S+)$")
    if not token then return refuse() end
    local now = ngx.time()
    local claims = cache and cache:get(token)
    if claims then
        if claims.exp + SKEW <= now then return refuse() end
    else
        claims = verify(token, now)
        if not claims then return refuse() end
        if cache then cache:set(token, claims, claims.exp + SKEW - now) end
    end
    ngx.req.set_header("X-User-Id", claims.sub)
    ngx.req.set_header("X-User-Email", header_value(claims.email))
    ngx.req.set_header("X-User-Role", header_value(claims.role))
    ngx.req.set_header("X-User-Scopes", header_value(claims.scope))
    ngx.req.set_header("X-Client-Id", header_value(claims.client_id))
end

return M
