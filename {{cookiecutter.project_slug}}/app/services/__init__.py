"""Business rules, one service per concern, on top of `app/models` and `app/db`.

Transactions follow one rule: a public service method is one unit of work and commits it (or
rolls it back) itself; helpers (module functions such as `users.create_user`, private
methods, `SessionService.revoke`) only add to the caller's transaction and never commit. Work
run after the response is a unit of its own, committed by `AuthService._after_response`. The
single exception is `audit.record_now`, for evidence that must survive the failure it reports.
"""
