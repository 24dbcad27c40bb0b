"""What PostgreSQL's errors say, in a sentence's words."""


def database_error_reason(error: Exception) -> str:
    """The first line of libpq's message, without its "connection to server at …
    failed: FATAL:" preamble, which repeats where."""
    lines = str(error).strip().splitlines()
    if not lines:
        return type(error).__name__
    return lines[0].rsplit(" failed: ", 1)[-1].removeprefix("FATAL:").strip()
