-- GET /api/v1/users/user/history?page=1&size=50 with a valid access token (TOKEN): the first page
-- of the caller's login history, newest first, and the total count.
wrk.method = "GET"
wrk.path = "/api/v1/users/user/history?page=1&size=50"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("TOKEN")
