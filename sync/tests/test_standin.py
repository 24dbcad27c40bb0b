"""The SteVe stand-in, over real HTTP, against SteVe's own OpenAPI file.

Every SteVe response checked here is validated against ``api-docs.json`` (SteVe
3.15.0-SNAPSHOT); the behaviour follows ``CONTRACT.md``. No Django and no
database: the stand-in is a subprocess and these tests are its HTTP clients.
"""

from __future__ import annotations

import base64
import copy
import functools
import http.client
import json
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import Message
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
from jsonschema import Draft202012Validator
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from sync.standin.testing import StandinProcess

SPEC_URI = "urn:steve:api-docs"
STEVE_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
BINDING_ERROR = "Error understanding the request"
NO_STATIONS = (
    "No stations are eligible for communication. "
    "Ensure that the chargeBox IDs are correct and the stations are online."
)
TAG_NOT_ELIGIBLE = (
    "Requested OCPP Tag is not eligible for this operation. "
    "Ensure that the OCPP Tag is registered and active."
)
SCENARIOS = {
    "manual_stop_replaced",
    "negative_stop_left_active",
    "zombie",
    "late_offline_start",
    "unknown_tag",
    "deleted",
    "meter_reset",
    "kwh_readings",
    "per_phase",
}
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


# -- SteVe's OpenAPI file -------------------------------------------------------


def api_docs_path() -> Path:
    """SteVe's ``api-docs.json``: in the shared folder next to the repository,
    else wherever ``STEVE_API_DOCS`` points."""
    shared = Path(__file__).resolve().parents[3] / "shared/steve/api-docs.json"
    if shared.is_file():
        return shared
    configured = os.environ.get("STEVE_API_DOCS")
    if configured and Path(configured).is_file():
        return Path(configured)
    pytest.fail(f"SteVe's api-docs.json is not at {shared}; set STEVE_API_DOCS.")


def _allow_null_when_optional(node: Any) -> Any:
    """Jackson writes explicit nulls (``"stopValue": null``) although the spec
    marks no property nullable. Relax the spec to match: a property that is not
    in ``required`` may also be null. Everything else stays as strict as SteVe's
    spec."""
    if isinstance(node, list):
        return [_allow_null_when_optional(item) for item in node]
    if not isinstance(node, dict):
        return node
    relaxed = {key: _allow_null_when_optional(value) for key, value in node.items()}
    properties = relaxed.get("properties")
    if isinstance(properties, dict):
        required = set(relaxed.get("required", []))
        relaxed["properties"] = {
            name: schema if name in required else {"anyOf": [schema, {"type": "null"}]}
            for name, schema in properties.items()
        }
    return relaxed


@functools.cache
def _spec() -> tuple[dict[str, Any], Registry]:
    spec = json.loads(api_docs_path().read_text())
    relaxed = _allow_null_when_optional(copy.deepcopy(spec))
    registry = Registry().with_resource(SPEC_URI, DRAFT202012.create_resource(relaxed))
    return spec, registry


def _pointer(*parts: str) -> str:
    return "/".join(part.replace("~", "~0").replace("/", "~1") for part in parts)


def assert_conforms(reply: Reply, path: str, method: str) -> None:
    """Validate a reply against the spec's response schema for its status; error
    statuses the spec leaves out of an operation use ``ApiErrorResponse``."""
    spec, registry = _spec()
    responses = spec["paths"][path][method]["responses"]
    response = responses.get(str(reply.status))
    if response is None:
        assert reply.status >= 400, f"{reply.status} is not in the spec for {path}"
        ref = f"{SPEC_URI}#/components/schemas/ApiErrorResponse"
    else:
        media_type = next(iter(response["content"]))
        location = ("paths", path, method, "responses", str(reply.status))
        ref = f"{SPEC_URI}#/{_pointer(*location, 'content', media_type, 'schema')}"
    validator = Draft202012Validator({"$ref": ref}, registry=registry)
    document = reply.json()
    validator.validate(document)
    assert_steve_timestamps(document)


def assert_steve_timestamps(node: Any) -> None:
    """Every timestamp is UTC with ``Z`` and exactly three millisecond digits."""
    if isinstance(node, list):
        for item in node:
            assert_steve_timestamps(item)
    elif isinstance(node, dict):
        for key, value in node.items():
            if key.lower().endswith("timestamp") or key == "expiryDate":
                assert value is None or STEVE_TIMESTAMP.fullmatch(value), (key, value)
            else:
                assert_steve_timestamps(value)


# -- HTTP -------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    status: int
    headers: Message
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Steve:
    """A small urllib client for the stand-in's SteVe API, plus its control API."""

    def __init__(self, standin: StandinProcess) -> None:
        self.standin = standin
        self.api_url = f"{standin.base_url}/api/v1"

    def call(
        self,
        method: str,
        path: str,
        params: dict[str, Any] | list[tuple[str, str]] | None = None,
        *,
        json_body: Any = None,
        raw_body: bytes | None = None,
        auth: tuple[str, str] | None = ("polaris", "polaris"),
        timeout: float = 10,
    ) -> Reply:
        query = f"?{urlencode(params, doseq=True)}" if params else ""
        data = raw_body if json_body is None else json.dumps(json_body).encode()
        request = urllib.request.Request(
            f"{self.api_url}{path}{query}", data=data, method=method
        )
        request.add_header("Content-Type", "application/json")
        if auth is not None:
            request.add_header("Authorization", _basic(*auth))
        try:
            with _NO_PROXY.open(request, timeout=timeout) as response:
                return Reply(response.status, response.headers, response.read())
        except urllib.error.HTTPError as error:
            return Reply(error.code, error.headers, error.read())

    def transactions(self, params: Any = None) -> list[dict[str, Any]]:
        reply = self.call("GET", "/transactions", params)
        assert reply.status == 200, reply.body
        assert_conforms(reply, "/api/v1/transactions", "get")
        items: list[dict[str, Any]] = reply.json()
        return items

    def transaction(self, pk: int) -> dict[str, Any]:
        (item,) = self.transactions({"transactionPk": pk})
        return item

    def details(self, pk: int, **params: str) -> dict[str, Any]:
        reply = self.call("GET", f"/transactions/{pk}", params)
        assert reply.status == 200, reply.body
        assert_conforms(reply, "/api/v1/transactions/{transactionPk}", "get")
        details: dict[str, Any] = reply.json()
        return details

    def stop(self, pk: int) -> Reply:
        return self.call("PATCH", f"/transactions/{pk}/stop")

    def operation(self, name: str, body: Any, *, timeout: float = 10) -> Reply:
        reply = self.call(
            "POST", f"/operations/{name}", json_body=body, timeout=timeout
        )
        assert_conforms(reply, f"/api/v1/operations/{name}", "post")
        return reply

    def url(self, path: str) -> str:
        return f"{self.api_url}{path}"


def _basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def iso(moment: datetime) -> str:
    """``moment`` in SteVe's own timestamp format."""
    return (
        moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


def idle_connector(steve: Steve) -> tuple[str, int]:
    """A connector of an online station that accepts remote starts, not charging."""
    for box in steve.standin.state()["chargeBoxes"]:
        if box["online"] and not box["rejectRemoteStart"]:
            for connector in box["connectors"]:
                if connector["transactionPk"] is None:
                    return box["chargeBoxId"], connector["connectorId"]
    raise AssertionError("the default fleet has an idle connector")


def unlinked(value: str, at: datetime) -> dict[str, Any]:
    """A reading the station sent without a transactionId."""
    return {"value": value, "valueTimestamp": iso(at), "transaction": False}


def reading(value: str, at: datetime, unit: str = "Wh") -> dict[str, Any]:
    """An energy-register reading naming its transaction."""
    return {"value": value, "valueTimestamp": iso(at), "unit": unit}


def evse_of(steve: Steve, pk: int) -> tuple[str, int]:
    """The chargeBoxId and connectorId of transaction ``pk``."""
    item = steve.transaction(pk)
    return item["chargeBoxId"], item["connectorId"]


def ids(items: list[dict[str, Any]]) -> list[int]:
    return [item["id"] for item in items]


@pytest.fixture(scope="module")
def default_fleet() -> Iterator[StandinProcess]:
    """One stand-in for this module, running the CLI's default fleet."""
    with StandinProcess(fleet_size=6, seed=1) as process:
        yield process


@pytest.fixture
def steve(default_fleet: StandinProcess) -> Steve:
    """The default fleet (6 stations, seed 1), freshly reset for each test."""
    default_fleet.reset()
    return Steve(default_fleet)


# -- tests ------------------------------------------------------------------------


class AuthTests:
    def test_it_answers_401_json_without_www_authenticate(self, steve: Steve) -> None:
        reply = steve.call("GET", "/transactions", auth=("polaris", "wrong"))

        assert reply.status == 401
        assert "WWW-Authenticate" not in reply.headers
        assert reply.json()["message"] == "Invalid password"
        assert reply.json()["path"] == steve.url("/transactions")
        assert_conforms(reply, "/api/v1/transactions", "get")

    def test_it_names_an_unknown_user_and_blank_credentials(self, steve: Steve) -> None:
        unknown = steve.call("GET", "/ocppTags", auth=("mallory", "polaris"))
        blank = steve.call("GET", "/ocppTags", auth=("polaris", ""))

        assert unknown.status == blank.status == 401
        assert unknown.json()["message"] == (
            "The user does not exist, exists but is disabled "
            "or has API access disabled."
        )
        assert blank.json()["message"] == "Required parameters missing"

    def test_it_answers_403_without_json_when_no_credentials_are_sent(
        self, steve: Steve
    ) -> None:
        reply = steve.call("GET", "/transactions", auth=None)

        assert reply.status == 403
        assert reply.body == b""


class TransactionListTests:
    def test_it_lists_every_transaction_newest_pk_first(self, steve: Steve) -> None:
        items = steve.transactions()

        assert ids(items) == sorted(ids(items), reverse=True)
        assert len(items) == len(steve.standin.state()["transactions"])
        assert {item["stopValue"] is None for item in items} == {True, False}
        for item in items:
            assert len(item) == 13  # every field, nulls written out
            assert item["startValue"].isdigit()

    def test_it_filters_by_type(self, steve: Steve) -> None:
        active = steve.transactions({"type": "ACTIVE"})
        stopped = steve.transactions({"type": "STOPPED"})

        assert all(item["stopTimestamp"] is None for item in active)
        assert all(item["stopEventActor"] in ("station", "manual") for item in stopped)
        assert sorted(ids(active) + ids(stopped)) == sorted(ids(steve.transactions()))

    def test_it_rejects_enum_values_in_the_wrong_case(self, steve: Steve) -> None:
        reply = steve.call("GET", "/transactions", {"type": "active"})

        assert reply.status == 400
        assert reply.json()["message"] == BINDING_ERROR
        assert reply.json()["path"] == steve.url("/transactions")
        assert_conforms(reply, "/api/v1/transactions", "get")

    def test_it_accepts_repeated_and_comma_separated_lists(self, steve: Steve) -> None:
        first, second = ids(steve.transactions())[:2]

        repeated = steve.transactions(
            [("transactionPk", first), ("transactionPk", second)]
        )
        joined = steve.transactions({"transactionPk": f"{first},{second}"})
        boxes = steve.transactions({"chargeBoxId": "CP-001, CP-002"})

        assert ids(repeated) == ids(joined) == [first, second]
        assert {item["chargeBoxId"] for item in boxes} == {"CP-001", "CP-002"}

    def test_it_filters_by_tag_user_and_connector(self, steve: Steve) -> None:
        by_user = steve.transactions({"userId": 1})
        by_connector = steve.transactions({"connectorId": 2})
        by_tag = steve.transactions({"ocppIdTag": "TAG-0004"})

        assert by_user and {item["userId"] for item in by_user} == {1}
        assert by_connector and {item["connectorId"] for item in by_connector} == {2}
        assert by_tag and {item["ocppIdTag"] for item in by_tag} == {"TAG-0004"}
        assert steve.transactions({"chargeBoxId": "CP-404"}) == []

    def test_it_treats_blank_parameters_as_absent(self, steve: Steve) -> None:
        blank = steve.transactions({"type": "", "periodType": " ", "chargeBoxId": ""})

        assert ids(blank) == ids(steve.transactions())

    def test_it_filters_today_and_last_days_on_the_start_date(
        self, steve: Steve
    ) -> None:
        box, connector = idle_connector(steve)
        today = steve.standin.add_transaction(box, connector, "TAG-0001")
        old = steve.standin.add_transaction(
            box, connector, "TAG-0001", start_timestamp="2024-08-25T14:30:00Z"
        )

        todays = steve.transactions({"periodType": "TODAY"})
        last_ten = steve.transactions({"periodType": "LAST_10"})

        assert today in ids(todays) and old not in ids(todays)
        utc_today = datetime.now(UTC).date().isoformat()
        assert all(item["startTimestamp"].startswith(utc_today) for item in todays)
        assert today in ids(last_ten) and old not in ids(last_ten)

    def test_it_filters_from_to_inclusively_on_the_start_time(
        self, steve: Steve
    ) -> None:
        box, connector = idle_connector(steve)
        pk = steve.standin.add_transaction(
            box, connector, "TAG-0001", start_timestamp="2024-08-25T14:30:00.000Z"
        )

        def window(start: str, end: str) -> list[int]:
            params = {"periodType": "FROM_TO", "from": start, "to": end}
            return ids(steve.transactions(params))

        assert window("2024-08-25T14:30:00.000Z", "2024-08-25T15:00:00Z") == [pk]
        assert window("2024-08-25T14:00", "2024-08-25T14:30:00.000Z") == [pk]
        assert window("2024-08-25", "2024-08-26") == [pk]
        assert window("2024-08-25T16:29+02:00", "2024-08-25T16:31+02:00") == [pk]
        assert window("2024-08-25T14:30:00.001Z", "2024-08-25T15:00:00Z") == []

    @pytest.mark.parametrize(
        "params",
        [
            {
                "periodType": "FROM_TO",
                "from": "2024-08-25T14:30Z",
                "to": "2024-08-25T14:30Z",
            },
            {"from": "2024-08-26", "to": "2024-08-25"},
            {"periodType": "FROM_TO", "from": "2024-08-25"},
            {"periodType": "FROM_TO", "from": "2024-08-25 14:30", "to": "2024-08-26"},
            {"periodType": "LAST_7"},
            {"transactionPk": "abc"},
            {"userId": "0"},
        ],
    )
    def test_it_rejects_invalid_filters_with_the_generic_400(
        self, steve: Steve, params: dict[str, str]
    ) -> None:
        reply = steve.call("GET", "/transactions", params)

        assert reply.status == 400
        assert reply.json()["message"] == BINDING_ERROR

    def test_it_refuses_csv_output(self, steve: Steve) -> None:
        refused = steve.call("GET", "/transactions", {"returnCSV": "true"})

        assert refused.status == 400
        assert (
            refused.json()["message"] == "returnCSV=true is not supported for API calls"
        )
        assert steve.call("GET", "/transactions", {"returnCSV": "false"}).status == 200


class TransactionDetailsTests:
    def test_it_returns_energy_register_readings_unless_asked_for_all(
        self, steve: Steve
    ) -> None:
        (pk,) = steve.standin.scenario("kwh_readings")

        energy = steve.details(pk)["values"]
        everything = steve.details(pk, energyValuesOnly="false")["values"]

        assert {v["measurand"] for v in energy} == {"Energy.Active.Import.Register"}
        assert {v["unit"] for v in energy} == {"kWh"}
        assert {"Power.Active.Import", "Current.Import", "SoC"} <= {
            v["measurand"] for v in everything
        }
        stamps = [v["valueTimestamp"] for v in everything]
        assert stamps == sorted(stamps)
        assert list(everything[0]) == [
            "valueTimestamp",
            "value",
            "readingContext",
            "format",
            "measurand",
            "location",
            "unit",
            "phase",
        ]

    def test_it_attributes_unlinked_readings_by_the_time_window(
        self, steve: Steve
    ) -> None:
        box, connector = idle_connector(steve)
        start = datetime.now(UTC) - timedelta(hours=1)
        pk = steve.standin.add_transaction(
            box, connector, "TAG-0001", start_timestamp=iso(start), start_value=1000
        )
        steve.standin.add_meter_values(
            pk,
            [
                unlinked("1001", start - timedelta(minutes=1)),
                unlinked("1002", start + timedelta(minutes=10)),
                unlinked("1003", start + timedelta(minutes=31)),
                {"value": "1004", "valueTimestamp": iso(start + timedelta(hours=2))},
            ],
        )
        steve.standin.station_stop(
            pk, 2000, stop_timestamp=iso(start + timedelta(minutes=30))
        )

        values = [v["value"] for v in steve.details(pk)["values"]]

        assert values == ["1002", "1004"]

    def test_it_ends_an_active_transactions_window_at_the_next_start(
        self, steve: Steve
    ) -> None:
        box, connector = idle_connector(steve)
        start = datetime.now(UTC) - timedelta(hours=2)
        zombie = steve.standin.add_transaction(
            box, connector, "TAG-0001", start_timestamp=iso(start)
        )
        steve.standin.add_meter_values(
            zombie,
            [
                unlinked("7001", start + timedelta(minutes=10)),
                unlinked("7002", start + timedelta(minutes=70)),
            ],
        )
        newer = steve.standin.add_transaction(
            box, connector, "TAG-0002", start_timestamp=iso(start + timedelta(hours=1))
        )

        assert steve.transaction(zombie)["stopValue"] is None
        assert [v["value"] for v in steve.details(zombie)["values"]] == ["7001"]
        assert [v["value"] for v in steve.details(newer)["values"]] == ["7002"]

    def test_it_answers_404_for_an_unknown_pk(self, steve: Steve) -> None:
        reply = steve.call("GET", "/transactions/999999")

        assert reply.status == 404
        body = reply.json()
        assert (body["status"], body["error"]) == (404, "Not Found")
        assert body["message"] == "There is no transaction with id '999999'"
        assert body["path"] == steve.url("/transactions/999999")
        assert_conforms(reply, "/api/v1/transactions/{transactionPk}", "get")

    @pytest.mark.parametrize(
        ("path", "parameter"),
        [
            ("/transactions/abc", "transactionPk"),
            ("/transactions/1?energyValuesOnly=maybe", "energyValuesOnly"),
        ],
    )
    def test_it_answers_400_with_springs_conversion_message(
        self, steve: Steve, path: str, parameter: str
    ) -> None:
        reply = steve.call("GET", path)

        assert reply.status == 400
        assert reply.json()["message"].startswith(f"Method parameter '{parameter}'")
        assert_conforms(reply, "/api/v1/transactions/{transactionPk}", "get")


class ManualStopTests:
    def _transaction(
        self, steve: Steve, start_value: int = 100_000
    ) -> tuple[int, datetime]:
        box, connector = idle_connector(steve)
        start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
        pk = steve.standin.add_transaction(
            box,
            connector,
            "TAG-0001",
            start_timestamp=iso(start),
            start_value=start_value,
        )
        return pk, start

    def test_it_stops_at_the_last_energy_reading_in_whole_wh(
        self, steve: Steve
    ) -> None:
        pk, start = self._transaction(steve)
        steve.standin.add_meter_values(
            pk,
            [
                reading("100500", start + timedelta(minutes=5)),
                reading("101.2345", start + timedelta(minutes=10), unit="kWh"),
                {**reading("1", start + timedelta(minutes=15)), "measurand": "SoC"},
            ],
        )

        reply = steve.stop(pk)

        assert (reply.status, reply.body) == (200, b"")
        stopped = steve.transaction(pk)
        assert (stopped["stopEventActor"], stopped["stopReason"]) == ("manual", None)
        assert stopped["stopValue"] == "101235"  # rounded up
        assert stopped["stopTimestamp"] == iso(start + timedelta(minutes=10))

    def test_it_skips_the_first_reading_after_a_decrease(self, steve: Steve) -> None:
        pk, start = self._transaction(steve)
        steve.standin.add_meter_values(
            pk,
            [
                reading("100500", start + timedelta(minutes=5)),
                reading("102000", start + timedelta(minutes=10)),
                reading("100200", start + timedelta(minutes=15)),
            ],
        )

        steve.stop(pk)

        stopped = steve.transaction(pk)
        assert stopped["stopValue"] == "102000"
        assert stopped["stopTimestamp"] == iso(start + timedelta(minutes=10))

    def test_it_falls_back_to_the_next_transactions_start(self, steve: Steve) -> None:
        pk, start = self._transaction(steve)
        box, connector = evse_of(steve, pk)
        later = iso(start + timedelta(minutes=40))
        steve.standin.add_transaction(
            box, connector, "TAG-0002", start_timestamp=later, start_value=150_000
        )

        steve.stop(pk)

        stopped = steve.transaction(pk)
        assert (stopped["stopValue"], stopped["stopTimestamp"]) == ("150000", later)

    def test_it_falls_back_to_the_start_values(self, steve: Steve) -> None:
        pk, start = self._transaction(steve)

        steve.stop(pk)

        stopped = steve.transaction(pk)
        assert (stopped["stopValue"], stopped["stopTimestamp"]) == (
            "100000",
            iso(start),
        )

    def test_it_is_idempotent_and_answers_404_for_unknown_pks(
        self, steve: Steve
    ) -> None:
        pk, _ = self._transaction(steve)
        steve.stop(pk)
        first = steve.transaction(pk)

        again = steve.stop(pk)
        unknown = steve.stop(999_999)

        assert again.status == 200 and steve.transaction(pk) == first
        assert unknown.status == 404
        assert unknown.json()["message"] == "There is no transaction with id '999999'"
        assert_conforms(unknown, "/api/v1/transactions/{transactionPk}/stop", "patch")


class StationStopTests:
    def test_a_station_stop_replaces_a_manual_stop(self, steve: Steve) -> None:
        (pk,) = steve.standin.scenario("manual_stop_replaced")
        manual = steve.transaction(pk)

        result = steve.standin.station_stop(pk, stop_reason="EVDisconnected")

        replaced = steve.transaction(pk)
        assert manual["stopEventActor"] == "manual"
        assert result == {"accepted": True, "reason": None}
        assert (replaced["stopEventActor"], replaced["stopReason"]) == (
            "station",
            "EVDisconnected",
        )
        assert int(replaced["stopValue"]) >= int(manual["stopValue"])

    def test_a_stop_below_the_start_value_leaves_the_transaction_active(
        self, steve: Steve
    ) -> None:
        box, connector = idle_connector(steve)
        pk = steve.standin.add_transaction(
            box, connector, "TAG-0001", start_value=500_000
        )

        result = steve.standin.station_stop(pk, 1_000)

        assert result["accepted"] is False
        assert pk in ids(steve.transactions({"type": "ACTIVE"}))
        failed = steve.standin.state()["failedStops"]
        assert pk in [row["transactionPk"] for row in failed]

    def test_a_second_station_stop_and_late_readings_are_refused(
        self, steve: Steve
    ) -> None:
        box, connector = idle_connector(steve)
        pk = steve.standin.add_transaction(box, connector, "TAG-0001", start_value=10)
        steve.standin.station_stop(pk, 20)

        second = steve.standin.station_stop(pk, 30)
        late = steve.standin.add_meter_values(pk, [{"value": "40"}])

        assert second["accepted"] is False
        assert steve.transaction(pk)["stopValue"] == "20"
        assert late == {"stored": 0, "dropped": 1}


class OperationTests:
    def test_remote_start_begins_a_transaction_on_the_next_tick(
        self, steve: Steve
    ) -> None:
        box, _ = idle_connector(steve)
        body = {"chargeBoxIdList": [box], "idTag": "TAG-0001", "connectorId": 0}

        reply = steve.operation("RemoteStartTransaction", body)

        assert reply.status == 200
        assert reply.json()["taskFinished"] is True
        assert reply.json()["successResponses"] == [
            {"chargeBoxId": box, "response": "Accepted"}
        ]
        assert reply.json()["errorResponses"] == reply.json()["exceptions"] == []
        active = {"type": "ACTIVE", "ocppIdTag": "TAG-0001"}
        assert steve.transactions(active) == []
        (started,) = steve.standin.tick()["started"]
        assert ids(steve.transactions(active)) == [started]

    def test_remote_start_reports_a_station_that_rejects_it(self, steve: Steve) -> None:
        body = {"chargeBoxIdList": ["CP-005"], "idTag": "TAG-0001"}

        reply = steve.operation("RemoteStartTransaction", body)

        assert reply.json()["successResponses"] == [
            {"chargeBoxId": "CP-005", "response": "Rejected"}
        ]
        assert steve.standin.tick()["started"] == []

    @pytest.mark.parametrize(
        ("body", "message"),
        [
            ({"chargeBoxIdList": ["CP-001"], "idTag": "TAG-BLOCKED"}, TAG_NOT_ELIGIBLE),
            ({"chargeBoxIdList": ["CP-001"], "idTag": "TAG-EXPIRED"}, TAG_NOT_ELIGIBLE),
            ({"chargeBoxIdList": ["CP-001"], "idTag": "NEVER-SEEN"}, TAG_NOT_ELIGIBLE),
            ({"chargeBoxIdList": ["CP-006"], "idTag": "TAG-0001"}, NO_STATIONS),
            ({"chargeBoxIdList": ["CP-404"], "idTag": "TAG-0001"}, NO_STATIONS),
            (
                {"chargeBoxIdList": ["CP-001", "CP-002"], "idTag": "TAG-0001"},
                BINDING_ERROR,
            ),
            ({"chargeBoxIdList": [], "idTag": "TAG-0001"}, BINDING_ERROR),
            ({"chargeBoxIdList": ["CP-001"]}, BINDING_ERROR),
            (
                {
                    "chargeBoxIdList": ["CP-001"],
                    "idTag": "TAG-0001",
                    "chargingProfilePk": 1,
                },
                "chargingProfilePk is unknown.",
            ),
        ],
    )
    def test_remote_start_pre_checks(
        self, steve: Steve, body: dict[str, Any], message: str
    ) -> None:
        reply = steve.operation("RemoteStartTransaction", body)

        assert reply.status == 400
        assert reply.json()["message"] == message

    def test_a_malformed_body_is_a_500(self, steve: Steve) -> None:
        reply = steve.call(
            "POST", "/operations/RemoteStartTransaction", raw_body=b"{bad"
        )

        assert reply.status == 500
        assert reply.json()["message"].startswith("JSON parse error")
        assert_conforms(reply, "/api/v1/operations/RemoteStartTransaction", "post")

    def test_remote_stop_makes_the_station_stop(self, steve: Steve) -> None:
        box, connector = idle_connector(steve)
        pk = steve.standin.add_transaction(box, connector, "TAG-0001")
        steve.standin.tick(60)

        reply = steve.operation(
            "RemoteStopTransaction", {"chargeBoxIdList": [box], "transactionId": pk}
        )

        assert reply.json()["successResponses"][0]["response"] == "Accepted"
        stopped = steve.transaction(pk)
        assert (stopped["stopEventActor"], stopped["stopReason"]) == (
            "station",
            "Remote",
        )
        assert int(stopped["stopValue"]) > int(stopped["startValue"])

    def test_remote_stop_refuses_a_transaction_that_is_not_active(
        self, steve: Steve
    ) -> None:
        stopped = steve.transactions({"type": "STOPPED", "chargeBoxId": "CP-001"})[0]

        reply = steve.operation(
            "RemoteStopTransaction",
            {"chargeBoxIdList": ["CP-001"], "transactionId": stopped["id"]},
        )

        assert reply.status == 400
        assert (
            reply.json()["message"] == "This transaction is not active at this station."
        )

    def test_reserve_now_and_cancel_reservation(self, steve: Steve) -> None:
        box, connector = idle_connector(steve)
        expiry = iso(datetime.now(UTC) + timedelta(hours=1))
        reserve = {
            "chargeBoxIdList": [box],
            "connectorId": connector,
            "expiry": expiry,
            "idTag": "TAG-0001",
        }

        reserved = steve.operation("ReserveNow", reserve)
        (reservation,) = steve.standin.state()["reservations"]
        cancel = {
            "chargeBoxIdList": [box],
            "reservationId": reservation["reservationId"],
        }
        cancelled = steve.operation("CancelReservation", cancel)
        again = steve.operation("CancelReservation", cancel)

        assert reserved.json()["successResponses"][0]["response"] == "Accepted"
        assert reservation["status"] == "ACCEPTED"
        assert cancelled.json()["successResponses"][0]["response"] == "Accepted"
        assert steve.standin.state()["reservations"][0]["status"] == "CANCELLED"
        assert again.status == 400
        assert (
            again.json()["message"] == "This reservation is not active at this station."
        )

    def test_reserve_now_answers_occupied_and_needs_a_future_expiry(
        self, steve: Steve
    ) -> None:
        box, connector = idle_connector(steve)
        steve.standin.add_transaction(box, connector, "TAG-0001")
        body = {"chargeBoxIdList": [box], "connectorId": connector, "idTag": "TAG-0002"}
        future = iso(datetime.now(UTC) + timedelta(hours=1))

        occupied = steve.operation("ReserveNow", {**body, "expiry": future})
        past = steve.operation("ReserveNow", {**body, "expiry": "2020-01-01T00:00:00Z"})

        assert occupied.json()["successResponses"][0]["response"] == "Occupied"
        assert steve.standin.state()["reservations"] == []  # refused rows are deleted
        assert (past.status, past.json()["message"]) == (400, BINDING_ERROR)

    def test_trigger_message_answers_for_online_stations_only(
        self, steve: Steve
    ) -> None:
        before = time.time()
        body = {"chargeBoxIdList": ["CP-001", "CP-006"], "triggerMessage": "Heartbeat"}

        reply = steve.operation("TriggerMessage", body)
        offline = steve.operation(
            "TriggerMessage", {**body, "chargeBoxIdList": ["CP-006"]}
        )

        assert reply.json()["successResponses"] == [
            {"chargeBoxId": "CP-001", "response": "Accepted"}
        ]
        heartbeat = steve.standin.state()["chargeBoxes"][0]["lastHeartbeat"]
        assert datetime.fromisoformat(heartbeat).timestamp() >= before - 0.01
        assert (offline.status, offline.json()["message"]) == (400, NO_STATIONS)

    def test_a_station_without_remote_trigger_answers_with_a_call_error(
        self, steve: Steve
    ) -> None:
        steve.standin.set_trigger_answer("CP-001", "NotImplemented")
        body = {"chargeBoxIdList": ["CP-001"], "triggerMessage": "Heartbeat"}

        reply = steve.operation("TriggerMessage", body).json()

        assert reply["successResponses"] == []
        assert reply["errorResponses"] == [
            {
                "chargeBoxId": "CP-001",
                "errorCode": "NotImplemented",
                "errorDescription": "Requested Action is not known by receiver",
                "errorDetails": "{}",
            }
        ]
        assert reply["exceptions"] == []

    def test_a_station_taken_offline_is_not_eligible(self, steve: Steve) -> None:
        body = {"chargeBoxIdList": ["CP-001"], "idTag": "TAG-0001"}
        steve.standin.set_online("CP-001", False)

        offline = steve.operation("RemoteStartTransaction", body)
        steve.standin.set_online("CP-001", True)
        online = steve.operation("RemoteStartTransaction", body)

        assert (offline.status, offline.json()["message"]) == (400, NO_STATIONS)
        assert online.status == 200


class TagTests:
    def test_it_lists_tags_with_their_activity(self, steve: Steve) -> None:
        reply = steve.call("GET", "/ocppTags")
        assert_conforms(reply, "/api/v1/ocppTags", "get")
        tags = {tag["idTag"]: tag for tag in reply.json()}

        assert tags["TAG-BLOCKED"]["blocked"] is True
        assert tags["TAG-0001"]["userPk"] == 1
        assert tags["TAG-0002"]["parentIdTag"] == "TAG-0001"
        assert tags["TAG-0004"]["maxActiveTransactionCount"] == -1
        assert tags["TAG-0004"]["inTransaction"] is True  # the zombie's fleet card

    @pytest.mark.parametrize(
        ("params", "expected"),
        [
            ({"expired": "TRUE"}, {"TAG-EXPIRED"}),
            ({"idTag": "TAG-0001"}, {"TAG-0001"}),
            ({"parentIdTag": "TAG-0001"}, {"TAG-0002"}),
            ({"note": "fleet   CARD"}, {"TAG-0004", "TAG-0008", "TAG-0012"}),
            ({"blocked": "TRUE", "userFilter": "OnlyTagsWithUser"}, {"TAG-BLOCKED"}),
        ],
    )
    def test_it_filters_tags(
        self, steve: Steve, params: dict[str, str], expected: set[str]
    ) -> None:
        reply = steve.call("GET", "/ocppTags", params)

        assert {tag["idTag"] for tag in reply.json()} == expected

    def test_it_rejects_unknown_filter_values(self, steve: Steve) -> None:
        reply = steve.call("GET", "/ocppTags", {"blocked": "true"})

        assert (reply.status, reply.json()["message"]) == (400, BINDING_ERROR)


class ScenarioTests:
    def test_every_contract_scenario_is_seeded(self, steve: Steve) -> None:
        assert set(steve.standin.state()["scenarios"]) == SCENARIOS

    def test_zombie_is_active_behind_a_newer_transaction(self, steve: Steve) -> None:
        zombie, newer = (
            steve.transaction(pk) for pk in steve.standin.scenario("zombie")
        )

        assert zombie["stopValue"] is None
        assert (zombie["chargeBoxId"], zombie["connectorId"]) == (
            newer["chargeBoxId"],
            newer["connectorId"],
        )
        assert newer["id"] > zombie["id"]
        assert newer["startTimestamp"] > zombie["startTimestamp"]

    def test_late_offline_start_has_the_highest_pk_and_an_old_start(
        self, steve: Steve
    ) -> None:
        (pk,) = steve.standin.scenario("late_offline_start")
        items = steve.transactions()

        assert ids(items)[0] == pk
        late = items[0]
        assert any(item["startTimestamp"] > late["startTimestamp"] for item in items)

    def test_unknown_tag_is_blocked_and_the_transaction_deauthorized(
        self, steve: Steve
    ) -> None:
        (pk,) = steve.standin.scenario("unknown_tag")
        item = steve.transaction(pk)
        reply = steve.call("GET", "/ocppTags", {"idTag": item["ocppIdTag"]})
        (tag,) = reply.json()

        assert (item["userId"], item["stopReason"]) == (None, "DeAuthorized")
        assert (tag["blocked"], tag["maxActiveTransactionCount"]) == (True, 0)
        assert tag["note"].startswith("This unknown idTag was used in a transaction")

    def test_a_known_tag_in_another_letter_case_is_that_tag(self, steve: Steve) -> None:
        # SteVe's database compares idTags under utf8_unicode_ci: the station's
        # spelling is kept on the transaction, the card is the known one.
        (known,) = steve.call("GET", "/ocppTags", {"idTag": "TAG-0001"}).json()
        box, connector = idle_connector(steve)
        pk = steve.standin.add_transaction(box, connector, "tag-0001")
        item = steve.transaction(pk)

        assert item["ocppIdTag"] == "tag-0001"
        assert (item["ocppTagPk"], item["userId"]) == (
            known["ocppTagPk"],
            known["userPk"],
        )
        assert pk in ids(steve.transactions({"ocppIdTag": "TAG-0001"}))
        # No second, blocked tag: the one known, with this charge counted.
        (found,) = steve.call("GET", "/ocppTags", {"idTag": "tag-0001"}).json()
        assert (found["ocppTagPk"], found["idTag"], found["blocked"]) == (
            known["ocppTagPk"],
            "TAG-0001",
            False,
        )
        assert found["activeTransactionCount"] == known["activeTransactionCount"] + 1

    def test_negative_stop_left_active_and_manual_stop_replaced(
        self, steve: Steve
    ) -> None:
        (negative,) = steve.standin.scenario("negative_stop_left_active")
        (manual,) = steve.standin.scenario("manual_stop_replaced")

        assert steve.transaction(negative)["stopValue"] is None
        assert steve.transaction(manual)["stopEventActor"] == "manual"

    def test_meter_reset_readings_fall_and_rise(self, steve: Steve) -> None:
        (pk,) = steve.standin.scenario("meter_reset")
        values = [
            float(v["value"]) for v in steve.details(pk)["values"] if v["phase"] is None
        ]
        falls = [i for i in range(1, len(values)) if values[i] < values[i - 1]]

        assert len(falls) == 1
        assert values[-1] > values[falls[0] - 1]

    def test_per_phase_readings_come_with_the_total(self, steve: Steve) -> None:
        (pk,) = steve.standin.scenario("per_phase")

        phases = {v["phase"] for v in steve.details(pk)["values"]}

        assert phases == {None, "L1", "L2", "L3"}

    def test_deleted_transaction_disappears(self, steve: Steve) -> None:
        (pk,) = steve.standin.scenario("deleted")

        steve.standin.delete_transaction(pk)

        assert pk not in ids(steve.transactions())
        assert steve.call("GET", f"/transactions/{pk}").status == 404

    def test_the_same_seed_builds_the_same_fleet(self, steve: Steve) -> None:
        def shape(state: dict[str, Any]) -> Any:
            keys = ("id", "chargeBoxId", "connectorId", "idTag", "active", "startValue")
            return (
                [tuple(t[k] for k in keys) for t in state["transactions"]],
                [t["idTag"] for t in state["tags"]],
                state["scenarios"],
            )

        first = shape(steve.standin.state())

        assert shape(steve.standin.reset()) == first
        assert shape(steve.standin.reset(seed=2)) != first


# A fault holding an answer back for longer than a client waits for it.
HELD_BACK_S = 3.0
CLIENT_WAITS_S = 0.3


def wait_for(condition: Callable[[], bool], what: str) -> None:
    """Return once `condition()` holds. A client that gave up does not know how
    far the stand-in got with its request; the deadline only ends a wait that
    would never end."""
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen"
        time.sleep(0.05)


def reserve_now(box: str, connector: int) -> dict[str, Any]:
    return {
        "chargeBoxIdList": [box],
        "connectorId": connector,
        "expiry": iso(datetime.now(UTC) + timedelta(hours=1)),
        "idTag": "TAG-0001",
    }


class FaultTests:
    def test_slow_delays_only_the_armed_number_of_requests(self, steve: Steve) -> None:
        steve.standin.set_fault("slow", delay=HELD_BACK_S)

        # Held back longer than the client waits, the answer never comes: that
        # shows the delay without measuring it. The next request is not delayed:
        # the one armed was used up.
        with pytest.raises(TimeoutError):
            steve.call("GET", "/ocppTags", timeout=CLIENT_WAITS_S)
        wait_for(lambda: steve.standin.state()["faults"] == [], "the fault used up")
        assert steve.call("GET", "/ocppTags").status == 200

    @pytest.mark.parametrize("status", [500, 404, 502, 503, 429])
    def test_error_answers_the_armed_status(self, steve: Steve, status: int) -> None:
        steve.standin.set_fault("error", status=status)

        reply = steve.call("GET", "/transactions")

        assert reply.status == status
        if status in (500, 404):
            assert_conforms(reply, "/api/v1/transactions", "get")
        else:
            assert reply.headers["Retry-After"] == "1"

    def test_malformed_answers_truncated_json(self, steve: Steve) -> None:
        steve.standin.set_fault("malformed", path_contains="/transactions")

        reply = steve.call("GET", "/transactions")

        assert reply.status == 200
        with pytest.raises(json.JSONDecodeError):
            reply.json()

    def test_cut_drops_the_connection_halfway_through_the_body(
        self, steve: Steve
    ) -> None:
        steve.standin.set_fault("cut", path_contains="/transactions")

        with pytest.raises(http.client.IncompleteRead):
            steve.call("GET", "/transactions")
        assert steve.call("GET", "/transactions").status == 200

    def test_hangup_closes_the_connection_after_carrying_out_the_request(
        self, steve: Steve
    ) -> None:
        steve.standin.set_fault("hangup", path_contains="TriggerMessage")
        before = time.time()
        body = {"chargeBoxIdList": ["CP-001"], "triggerMessage": "Heartbeat"}

        with pytest.raises(http.client.RemoteDisconnected):
            steve.operation("TriggerMessage", body)

        heartbeat = steve.standin.state()["chargeBoxes"][0]["lastHeartbeat"]
        assert datetime.fromisoformat(heartbeat).timestamp() >= before - 0.01

    def test_unauthorized_answers_as_for_bad_credentials(self, steve: Steve) -> None:
        steve.standin.set_fault("unauthorized", count=-1, path_contains="type=ACTIVE")

        refused = steve.call("GET", "/transactions", {"type": "ACTIVE"})
        unaffected = steve.call("GET", "/transactions")
        still_refused = steve.call("GET", "/transactions", {"type": "ACTIVE"})
        steve.standin.clear_faults()

        assert refused.status == still_refused.status == 401
        assert refused.json()["message"] == "Invalid password"
        assert unaffected.status == 200
        assert steve.call("GET", "/transactions", {"type": "ACTIVE"}).status == 200

    def test_timeout_operation_leaves_the_task_unfinished(self, steve: Steve) -> None:
        box, connector = idle_connector(steve)
        steve.standin.set_fault("timeout_operation", delay=0)
        reply = steve.operation("ReserveNow", reserve_now(box, connector))

        assert reply.json()["taskFinished"] is False
        assert reply.json()["successResponses"] == []
        state = steve.standin.state()
        assert state["reservations"][0]["status"] == "WAITING"
        assert state["faults"] == []

    def test_timeout_operation_holds_the_answer_back(self, steve: Steve) -> None:
        # As SteVe waits for a station that never answers; shown, as for slow,
        # by a client that gives up first.
        box, connector = idle_connector(steve)
        steve.standin.set_fault("timeout_operation", delay=HELD_BACK_S)

        with pytest.raises(TimeoutError):
            steve.operation(
                "ReserveNow", reserve_now(box, connector), timeout=CLIENT_WAITS_S
            )
        # The station was asked all the same (after the fault was used up).
        wait_for(lambda: bool(steve.standin.state()["reservations"]), "ReserveNow")
        state = steve.standin.state()
        assert state["reservations"][0]["status"] == "WAITING"
        assert state["faults"] == []

    def test_steve_3_11_lacks_only_the_routes_3_12_added(self, steve: Steve) -> None:
        pk = steve.transactions()[0]["id"]
        steve.standin.set_fault("steve_3_11", count=-1)

        details = steve.call("GET", f"/transactions/{pk}")
        stop = steve.stop(pk)
        listed = steve.call("GET", "/transactions", {"transactionPk": pk})
        steve.standin.clear_faults()

        assert (details.status, stop.status) == (404, 404)
        assert details.json()["path"].endswith(f"/api/v1/transactions/{pk}")
        assert "message" not in details.json() and "message" not in stop.json()
        assert listed.status == 200
        assert steve.details(pk)["transaction"]["id"] == pk


class RoutingTests:
    def test_unknown_routes_get_springs_404_not_steves(self, steve: Steve) -> None:
        reply = steve.call("GET", "/chargeBoxes")

        assert reply.status == 404
        assert "message" not in reply.json()

    def test_a_wrong_method_on_a_known_route_is_a_405(self, steve: Steve) -> None:
        assert steve.call("DELETE", "/transactions").status == 405

    def test_request_counts_are_reported_per_path(self, steve: Steve) -> None:
        steve.call("GET", "/ocppTags", {"idTag": "TAG-0001"})
        steve.call("GET", "/ocppTags")

        requests = steve.standin.state()["requests"]

        assert requests["/steve/api/v1/ocppTags"] == 2

    def test_api_request_targets_are_recorded_with_their_query(
        self, steve: Steve
    ) -> None:
        steve.call("GET", "/ocppTags", {"idTag": "TAG-0001"})
        steve.call("GET", "/ocppTags")

        # Control requests (this state() call among them) are not SteVe's.
        assert steve.standin.state()["apiRequests"] == [
            "/steve/api/v1/ocppTags?idTag=TAG-0001",
            "/steve/api/v1/ocppTags",
        ]


class ControlApiTests:
    """The control API has no password: only programs on this machine may use
    it, not a web page open in a browser here."""

    def control(
        self, steve: Steve, method: str, path: str, headers: dict[str, str]
    ) -> Reply:
        request = urllib.request.Request(
            f"{steve.standin.control_url}/{path}",
            data=b'{"online": false}' if method == "POST" else None,
            method=method,
            headers=headers,
        )
        try:
            with _NO_PROXY.open(request, timeout=10) as response:
                return Reply(response.status, response.headers, response.read())
        except urllib.error.HTTPError as error:
            return Reply(error.code, error.headers, error.read())

    def online(self, steve: Steve, charge_box_id: str) -> bool:
        (box,) = [
            box
            for box in steve.standin.state()["chargeBoxes"]
            if box["chargeBoxId"] == charge_box_id
        ]
        online: bool = box["online"]
        return online

    def test_a_forms_text_plain_post_changes_nothing(self, steve: Steve) -> None:
        box, _ = idle_connector(steve)
        reply = self.control(
            steve, "POST", f"stations/{box}", {"Content-Type": "text/plain"}
        )
        assert reply.status == 415
        assert "Content-Type: application/json" in reply.json()["error"]
        assert self.online(steve, box)

    def test_another_host_name_is_refused_even_on_127_0_0_1(self, steve: Steve) -> None:
        box, _ = idle_connector(steve)
        rebound = {"Host": "attacker.example", "Content-Type": "application/json"}
        for method, path in (("GET", "state"), ("POST", f"stations/{box}")):
            reply = self.control(steve, method, path, rebound)
            assert reply.status == 403, (method, reply.body)
        assert self.online(steve, box)
        for host in ("localhost:8180", "[::1]:8180", "127.0.0.1"):
            reply = self.control(steve, "GET", "health", {"Host": host})
            assert reply.status == 200, host


class KeepAliveTests:
    """HTTP/1.1 persistent connections, as SteVe's servlet container offers them:
    every response, errors included, is framed by Content-Length, so a client
    can send the next request on the same connection."""

    def test_one_connection_serves_successes_and_errors(self, steve: Steve) -> None:
        pk = steve.transactions()[0]["id"]
        base = urlsplit(steve.api_url)
        auth = {"Authorization": _basic("polaris", "polaris")}
        requests: list[tuple[str, str, dict[str, str], bytes | None, int]] = [
            ("GET", f"/transactions/{pk}", auth, None, 200),
            ("GET", "/transactions/999999", auth, None, 404),
            ("GET", "/transactions/abc", auth, None, 400),
            ("GET", "/chargeBoxes", auth, None, 404),
            ("DELETE", "/transactions", auth, None, 405),
            ("GET", "/transactions", {}, None, 403),
            ("GET", "/transactions", {"Authorization": _basic("x", "y")}, None, 401),
            ("POST", "/operations/RemoteStartTransaction", auth, b"{bad", 500),
            ("PATCH", f"/transactions/{pk}/stop", auth, None, 200),
            ("GET", f"/transactions/{pk}", auth, None, 200),
        ]
        connections = steve.standin.state()["apiConnections"]
        connection = http.client.HTTPConnection(base.hostname, base.port, timeout=10)
        try:
            connection.connect()
            sock = connection.sock
            for method, path, headers, body, status in requests:
                connection.request(method, base.path + path, body, headers)
                response = connection.getresponse()
                content = response.read()

                assert response.status == status, (method, path, content)
                assert response.version == 11
                assert response.getheader("Content-Length") == str(len(content))
                assert not response.will_close, (method, path)
                assert connection.sock is sock, (method, path)
        finally:
            connection.close()
        assert steve.standin.state()["apiConnections"] == connections + 1


def test_it_numbers_transactions_from_the_first_pk_it_is_given() -> None:
    with StandinProcess(fleet_size=2, seed=3, first_transaction_pk=5_000_001) as steve:
        listed = Steve(steve).transactions()
        seeded = sorted(item["id"] for item in listed)
        assert seeded[0] == 5_000_001
        assert seeded == list(range(5_000_001, 5_000_001 + len(seeded)))
        free = next(
            (box["chargeBoxId"], connector["connectorId"])
            for box in steve.state()["chargeBoxes"]
            for connector in box["connectors"]
            if not connector.get("transactionPk")
        )
        assert steve.add_transaction(*free, "FIRSTPK") == seeded[-1] + 1
