"""Business rules, one service per concern, on top of `app/models` and `app/db`.

Transactions follow one rule: a public service method is one unit of work and commits it (or
rolls it back) itself; helpers (module functions such as `users.create_user`, private
methods, `SessionService.revoke`) only add to the caller's transaction and never commit.
So does mail: `ctx.mailer.enqueue` adds the message to the outbox in the caller's transaction,
and it is sent once that commits (`app/services/outbox.py`).
Work handed over to run after the response calls one public method on a database session of
its own (`AuthService._after_response`). The single exception is `audit.record_now`, for
evidence that must outlive the failure it reports.
"""
