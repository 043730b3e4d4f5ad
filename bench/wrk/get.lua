-- A plain GET of the URL's path (JWKS, healthz, the bare server).
wrk.method = "GET"
