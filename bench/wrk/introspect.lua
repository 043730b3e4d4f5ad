-- RFC 7662 introspection of a user's token (TOKEN) by an admin (ADMIN_TOKEN).
wrk.method = "POST"
wrk.path = "/api/v1/auth/introspect"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("ADMIN_TOKEN")
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.body = "token=" .. os.getenv("TOKEN")
