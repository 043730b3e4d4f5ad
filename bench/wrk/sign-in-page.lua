-- GET /oauth2/authorize without a browser session (no cookies): the sign-in page.
-- AUTHORIZE_PATH is the path and query of the authorization request.
wrk.method = "GET"
wrk.path = os.getenv("AUTHORIZE_PATH")
