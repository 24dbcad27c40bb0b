import json

from django.test import SimpleTestCase

from polaris.testing import child_environment, run_python

# Logs one awkward message and one exception through the LOGGING that settings
# build, as a production process would.
LOG_TWO_RECORDS = """
import django, logging
django.setup()
logger = logging.getLogger("polaris.example")
logger.warning('He said "stop"\\nthen left')
try:
    raise ValueError('bad "value"')
except ValueError:
    logger.exception("Import failed for page=%s", 3)
"""


class JsonLoggingTests(SimpleTestCase):
    def test_it_writes_each_record_as_one_valid_json_line(self) -> None:
        result = run_python(
            ["-c", LOG_TWO_RECORDS], env=child_environment(LOG_FORMAT="json")
        )

        self.assertEqual(result.returncode, 0, result.stderr)
        lines = result.stderr.splitlines()
        self.assertEqual(len(lines), 2, result.stderr)
        warning, error = (json.loads(line) for line in lines)
        self.assertEqual(warning["message"], 'He said "stop"\nthen left')
        self.assertEqual(warning["level"], "WARNING")
        self.assertEqual(warning["logger"], "polaris.example")
        self.assertNotIn("exc_info", warning)
        self.assertEqual(error["message"], "Import failed for page=3")
        self.assertEqual(error["level"], "ERROR")
        self.assertIn("Traceback (most recent call last):", error["exc_info"])
        self.assertIn('ValueError: bad "value"', error["exc_info"])
