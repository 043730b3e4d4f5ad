-- GET /api/v1/user_roles/me with a valid access token (TOKEN).
wrk.method = "GET"
wrk.path = "/api/v1/user_roles/me"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("TOKEN")
