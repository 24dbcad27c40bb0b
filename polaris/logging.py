"""Log formatting for LOG_FORMAT=json."""

import json
import logging


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line, whatever the message holds.

    A %-format template cannot escape quotes or newlines in the message, and a
    traceback would spill over several lines that a log collector reads as separate
    records; json.dumps escapes all of them.
    """

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(entry)
