"""A DynamoDB stand-in on 127.0.0.1 for the idempotency store (shared.idempotency), which botocore reaches through
AWS_ENDPOINT_URL_DYNAMODB: tests/shared/test_idempotency.py asserts its requests, bench/accepted.py times the
store Lambda deployments use against it."""

from __future__ import annotations

import json
import threading
from contextlib import suppress
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

CONDITION_FAILED = "ConditionalCheckFailedException"


class FakeDynamoDB:
    """DynamoDB's JSON protocol for one table: PutItem, GetItem, UpdateItem, DeleteItem, with the condition
    expressions shared.idempotency sends evaluated as DynamoDB would (any other expression is a
    ValidationException, so a changed request fails the tests). Records every request; injects faults."""

    def __init__(self, table: str = "idempotency") -> None:
        self.table = table
        self.items: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.faults: list[tuple[str, int]] = []  # (error code, HTTP status) answered to the next requests
        self.return_old_item = True  # False: like a store that ignores ReturnValuesOnConditionCheckFailure
        self.stall = threading.Event()  # set: answer; clear: hold the answer until released
        self.stall.set()
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                params = json.loads(self.rfile.read(length) or b"{}")
                operation = self.headers.get("X-Amz-Target", "").rpartition(".")[2]
                if not fake.stall.is_set():  # never answered, never applied: the client times out
                    fake.requests.append((operation, params))
                    fake.stall.wait(5)
                    self.close_connection = True
                    return
                status, body = fake.answer(operation, params)
                data = json.dumps(body).encode()
                with suppress(OSError):
                    self.send_response(status)
                    self.send_header("Content-Type", "application/x-amz-json-1.0")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        """Release a held answer, then stop serving."""
        self.stall.set()
        self.server.shutdown()
        self.server.server_close()

    def reset(self) -> None:
        with self.lock:
            self.items, self.requests, self.faults, self.return_old_item = {}, [], [], True
        self.stall.set()

    def operations(self) -> list[str]:
        return [operation for operation, _ in self.requests]

    def answer(self, operation: str, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        with self.lock:
            self.requests.append((operation, params))
            if self.faults:
                code, status = self.faults.pop(0)
                return status, {"__type": f"com.amazonaws.dynamodb.v20120810#{code}", "message": code}
            if params.get("TableName") != self.table:
                return 400, {"__type": "com.amazonaws.dynamodb.v20120810#ResourceNotFoundException",
                             "message": "Requested resource not found"}
            key = params["Item"]["key"]["S"] if operation == "PutItem" else params["Key"]["key"]["S"]
            old = self.items.get(key)
            if "ConditionExpression" in params and not self._holds(params, old):
                body: dict[str, Any] = {"__type": f"com.amazonaws.dynamodb.v20120810#{CONDITION_FAILED}",
                                        "message": "The conditional request failed"}
                if params.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD" and old and self.return_old_item:
                    body["Item"] = old
                return 400, body
            if operation == "PutItem":
                self.items[key] = params["Item"]
            elif operation == "DeleteItem":
                self.items.pop(key, None)
            elif operation == "UpdateItem":
                item = dict(old or {"key": {"S": key}})
                assignments = params["UpdateExpression"].removeprefix("SET ").split(", ")
                for assignment in assignments:
                    name, _, value = assignment.partition(" = ")
                    item[params["ExpressionAttributeNames"][name]] = params["ExpressionAttributeValues"][value]
                self.items[key] = item
            elif operation == "GetItem":
                return 200, {"Item": old} if old else {}
            return 200, {}

    def _holds(self, params: dict[str, Any], old: dict[str, Any] | None) -> bool:
        expression = params["ConditionExpression"]
        values = params["ExpressionAttributeValues"]
        if expression == "attribute_not_exists(#key) OR #expires_at < :now":
            return old is None or int(old["expires_at"]["N"]) < int(values[":now"]["N"])
        if expression == "#status = :in_progress AND #expires_at = :claimed_until":
            return old is not None and old["status"] == values[":in_progress"] \
                and old["expires_at"] == values[":claimed_until"]
        raise AssertionError(f"unexpected ConditionExpression {expression!r}")
