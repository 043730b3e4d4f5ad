-- POST /oauth2/token with grant_type=client_credentials, the client authenticated by HTTP Basic
-- (BASIC: base64 of client_id:client_secret).
wrk.method = "POST"
wrk.path = "/oauth2/token"
wrk.headers["Authorization"] = "Basic " .. os.getenv("BASIC")
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.body = "grant_type=client_credentials"
