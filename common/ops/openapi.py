"""The web service's OpenAPI document, served at /openapi.json.

It names every answer a route gives, with its content type and schema, and
the request bodies say all the service accepts: anything else is a 400.
tests/integration/test_web_schema.py holds the service to it."""

from common.ops.snapshot import TOTALLED
from common.store.ingest import IDEMPOTENCY_KEY, MAX_BATCH, MAX_VALUE_LENGTH

OPT_OUT_LIST = 100  # entries GET /api/optouts lists unless ?limit= says otherwise
MAX_OPT_OUT_LIST = 10_000

MESSAGE = {
    "type": "object",
    "required": ["to"],
    "additionalProperties": False,
    "properties": {
        "to": {
            "type": "string",
            "example": "+62 812 3456 7890",
            "description": "Phone number; national numbers need DEFAULT_REGION.",
        },
        "template": {
            "type": "string",
            "minLength": 1,
            "description": "The campaign's WHATSAPP_TEMPLATE, or any template with TEMPLATE_COLUMN set.",
        },
        "text": {
            "type": "string",
            "minLength": 1,
            "description": "The campaign's WHATSAPP_TEXT, or any text with TEXT_COLUMN set.",
        },
        "params": {
            "type": "object",
            "additionalProperties": {"oneOf": [{"type": "string", "maxLength": MAX_VALUE_LENGTH}, {"type": "number"}]},
            "description": "Values for other columns of the campaign table (message variables).",
        },
    },
}
ERROR = {
    "type": "object",
    "required": ["error"],
    "additionalProperties": False,
    "properties": {"error": {"type": "string", "description": "What was wrong, in one line."}},
}
QUEUED = {
    "type": "object",
    "required": ["status", "ids"],
    "additionalProperties": False,
    "properties": {
        "status": {"const": "queued"},
        "ids": {"type": "array", "items": {"type": "integer"}, "description": "The new rows' ids, in order."},
    },
}
STEERED = {
    "type": "object",
    "required": ["paused", "partition"],
    "additionalProperties": False,
    "properties": {
        "paused": {"type": "boolean"},
        "partition": {"type": ["string", "null"], "description": '"K/N", or null for the whole campaign.'},
    },
}
RESENT = {
    "type": "object",
    "required": ["resent"],
    "additionalProperties": False,
    "properties": {"resent": {"type": "integer", "minimum": 0, "description": "Failed rows set back to pending."}},
}
OPT_OUT = {
    "type": "object",
    "required": ["phone", "reason", "source", "created_at"],
    "additionalProperties": False,
    "properties": {
        "phone": {"type": "string", "description": "E.164 digits, as messages are sent."},
        "reason": {"type": "string"},
        "source": {
            "type": "string",
            "description": "meta, waha or gowa (a reply), status (`status optout add`), import, api.",
        },
        "created_at": {"type": "string", "description": "When it was added (the database's time, ISO 8601)."},
    },
}
OPT_OUTS = {
    "type": "object",
    "required": ["total", "optouts"],
    "additionalProperties": False,
    "properties": {
        "total": {"type": "integer", "minimum": 0, "description": "Phones on the list."},
        "optouts": {
            "type": "array",
            "items": {"$ref": "#/components/schemas/OptOut"},
            "description": "The latest ones first.",
        },
    },
}
PHONES = {
    "type": "array",
    "minItems": 1,
    "maxItems": MAX_BATCH,
    "items": {"type": "string", "example": "+62 812 3456 7890"},
    "description": "Phone numbers; national ones need DEFAULT_REGION. One that is not a phone is a 400 and "
    "nothing is changed.",
}
OPTED_OUT = {
    "type": "object",
    "required": ["added", "already_listed"],
    "additionalProperties": False,
    "properties": {"added": {"type": "integer", "minimum": 0}, "already_listed": {"type": "integer", "minimum": 0}},
}
OPTED_IN = {
    "type": "object",
    "required": ["removed", "not_listed"],
    "additionalProperties": False,
    "properties": {"removed": {"type": "integer", "minimum": 0}, "not_listed": {"type": "integer", "minimum": 0}},
}
SECONDS = {"type": ["number", "null"], "minimum": 0}
FUNNEL_ROW = {
    "type": "object",
    "required": [
        "partition",
        "sent",
        "delivered",
        "read",
        "failed_after_acceptance",
        "opted_out",
        "delivery_p50_seconds",
        "delivery_p95_seconds",
        "delivery_samples",
    ],
    "additionalProperties": False,
    "properties": {
        "partition": {"type": "string", "description": '"K/N", or "total".'},
        "sent": {"type": "integer", "minimum": 0, "description": "Rows sent (column3 = 0)."},
        "delivered": {"type": "integer", "minimum": 0, "description": "Messages delivered, read ones included."},
        "read": {"type": "integer", "minimum": 0},
        "failed_after_acceptance": {
            "type": "integer",
            "minimum": 0,
            "description": "Messages the gateway accepted and later reported failed.",
        },
        "opted_out": {"type": "integer", "minimum": 0, "description": 'Rows failed "opted out", unsent.'},
        "delivery_p50_seconds": SECONDS,
        "delivery_p95_seconds": SECONDS,
        "delivery_samples": {"type": "integer", "minimum": 0},
    },
}
AFTER_SENDING = {
    "type": ["object", "null"],
    "description": "What the gateways' receipts said (null on a database without the receipt tables).",
    "required": ["partitions", "total", "sample_limit"],
    "additionalProperties": False,
    "properties": {
        "partitions": {"type": "array", "items": FUNNEL_ROW},
        "total": FUNNEL_ROW,
        "sample_limit": {
            "type": "integer",
            "description": "Delivery times are taken over at most this many of the latest delivered messages.",
        },
    },
}
CHECK = {"enum": ["ok", "unreachable"]}
HEALTH = {
    "type": "object",
    "required": ["status", "mysql", "redis"],
    "additionalProperties": False,
    "properties": {"status": {"enum": ["ok", "degraded"]}, "mysql": CHECK, "redis": CHECK},
}
COUNT = {"type": "integer", "minimum": 0}
UNIX_MS = {"type": ["integer", "null"], "minimum": 0}
PARTITION = {
    "type": "object",
    "required": [
        "partition",
        "pending",
        "queued",
        "in_flight",
        "due_later",
        "next_due_ms",
        "next_due_in_seconds",
        "last_due_ms",
        "sent",
        "failed",
        "sent_last_minute",
        "retries",
        "reclaims",
        "paused",
        "sending_since_ms",
    ],
    "additionalProperties": False,
    "properties": {
        "partition": {"type": "string", "description": '"K/N".'},
        "pending": {"type": "integer", "minimum": 0, "description": "Rows pending in MySQL."},
        "queued": {
            "type": "integer",
            "minimum": 0,
            "description": "Jobs due now, jobs whose consumer's lease lapsed included.",
        },
        "in_flight": {"type": "integer", "minimum": 0, "description": "Jobs consumers said they held (heartbeats)."},
        "due_later": {
            "type": "integer",
            "minimum": 0,
            "description": "Jobs due later that no consumer holds: scheduled (SCHEDULE_COLUMN, START_AT) or "
            "waiting for a retry.",
        },
        "next_due_ms": {
            **UNIX_MS,
            "description": "When the earliest of due_later is due (unix ms, Redis's clock); null when none is.",
        },
        "next_due_in_seconds": {**SECONDS, "description": "The same, as seconds from now."},
        "last_due_ms": {
            **UNIX_MS,
            "description": "When the latest of due_later is due (unix ms, Redis's clock); null when none is.",
        },
        "sent": COUNT,
        "failed": COUNT,
        "sent_last_minute": COUNT,
        "retries": COUNT,
        "reclaims": {"type": "integer", "minimum": 0, "description": "Jobs taken over from a lapsed lease."},
        "paused": {"type": "boolean"},
        "sending_since_ms": {**UNIX_MS, "description": "When sends began (unix ms); null after a quiet minute."},
    },
}
DAILY_LIMIT = {
    "type": ["object", "null"],
    "description": "The sender's DAILY_LIMIT as its consumers published it; null when they run without one.",
    "required": ["limit", "used", "at_limit", "next_slot_in_seconds", "next_slot_ms"],
    "additionalProperties": False,
    "properties": {
        "limit": {"type": "integer", "minimum": 1, "description": "Unique recipients allowed in a rolling 24 h."},
        "used": {"type": "integer", "minimum": 0, "description": "Recipients counted in the last 24 h."},
        "at_limit": {"type": "boolean", "description": "No new recipient until a slot frees."},
        "next_slot_in_seconds": {**SECONDS, "description": "At the limit: seconds until a slot frees; else null."},
        "next_slot_ms": {**UNIX_MS, "description": "At the limit: when a slot frees (unix ms); else null."},
    },
}
SENDER = {
    "type": "object",
    "required": ["name", "state", "reason", "daily_limit"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string"},
        "state": {"type": "string", "description": "The sender's circuit breaker: closed, open or half_open."},
        "reason": {"type": ["string", "null"], "description": "Why the breaker opened."},
        "opens_for_trial_in": {"type": "number", "minimum": 0, "description": "Open: seconds until a trial send."},
        "daily_limit": DAILY_LIMIT,
    },
}
TOTAL = {
    "type": "object",
    "description": "The partitions' counts added up.",
    "required": list(TOTALLED),
    "additionalProperties": False,
    "properties": dict.fromkeys(TOTALLED, COUNT),
}
PROCESS = {
    "type": "object",
    "description": "A producer or consumer, from its heartbeat.",
    "required": ["role", "partition", "host", "pid", "last_beat_seconds_ago", "in_flight", "paused", "outside_window"],
    "additionalProperties": False,
    "properties": {
        "role": {"type": ["string", "null"], "description": "producer or consumer."},
        "partition": {"type": ["string", "null"], "description": '"K/N".'},
        "host": {"type": ["string", "null"]},
        "pid": {"type": "integer"},
        "last_beat_seconds_ago": {"type": "number", "description": "On this host's clock."},
        "in_flight": COUNT,
        "paused": {"type": "boolean"},
        "outside_window": {"type": "boolean", "description": "Outside SEND_WINDOW: claims nothing."},
    },
}
FAILURE_REASON = {
    "type": "object",
    "required": ["reason", "rows"],
    "additionalProperties": False,
    "properties": {"reason": {"type": "string"}, "rows": COUNT},
}
RECENT_FAILURE = {
    "type": "object",
    "required": ["row_id", "attempts", "http_status", "reason", "failed_at"],
    "additionalProperties": False,
    "properties": {
        "row_id": {"type": "integer"},
        "attempts": {"type": "integer"},
        "http_status": {"type": ["integer", "null"], "description": "The gateway's last answer; null when none."},
        "reason": {"type": "string"},
        "failed_at": {"type": "string", "description": "MySQL's time, 'YYYY-MM-DD HH:MM:SS'."},
    },
}
MINUTE = {
    "type": "object",
    "required": ["minute", "sent"],
    "additionalProperties": False,
    "properties": {"minute": {"type": "integer", "description": "Its start, unix seconds."}, "sent": COUNT},
}
STATUS = {
    "type": "object",
    "description": "What `python -m common.status --json` prints.",
    "additionalProperties": False,
    "required": [
        "time",
        "table",
        "rows",
        "done_percent",
        "rate_per_second",
        "eta_seconds",
        "done",
        "paused",
        "total",
        "partitions",
        "processes",
        "senders",
        "failure_reasons",
        "recent_failures",
        "sent_per_minute",
        "after_sending",
    ],
    "properties": {
        "time": {"type": "string"},
        "table": {"type": "string"},
        "rows": COUNT,
        "done_percent": {"type": "number"},
        "rate_per_second": {"type": "number"},
        "eta_seconds": {
            "type": ["integer", "null"],
            "description": "Until every pending row is done: the rows due now at rate_per_second, and not before "
            "the last job due later is due; null when nothing is pending or nothing was sent in the last minute.",
        },
        "done": {"type": "boolean"},
        "paused": {"type": "boolean"},
        "total": TOTAL,
        "partitions": {"type": "array", "items": {"$ref": "#/components/schemas/Partition"}},
        "processes": {"type": "array", "items": PROCESS},
        "senders": {"type": "array", "items": {"$ref": "#/components/schemas/Sender"}},
        "failure_reasons": {"type": "array", "items": FAILURE_REASON},
        "recent_failures": {"type": "array", "items": RECENT_FAILURE},
        "sent_per_minute": {"type": "array", "items": MINUTE},
        "after_sending": AFTER_SENDING,
    },
}


def json_body(schema: dict) -> dict:
    return {"content": {"application/json": {"schema": schema}}}


AN_ERROR = json_body({"$ref": "#/components/schemas/Error"})
RESPONSES = {
    "BadRequest": {
        "description": "the body is not what this operation takes (not JSON, nested too deeply, "
        "a lone surrogate, a wrong field or value); nothing was changed",
        **AN_ERROR,
    },
    "Unauthorized": {
        "description": "credentials needed (WEB_USERNAME/WEB_PASSWORD are set)",
        **AN_ERROR,
        "headers": {"WWW-Authenticate": {"required": True, "schema": {"type": "string"}}},
    },
    "Forbidden": {"description": "without WEB_USERNAME/WEB_PASSWORD only requests to localhost are served", **AN_ERROR},
    "TooLarge": {
        "description": "the body is larger than WEB_MAX_BODY (1 MiB unless set); the server (waitress) "
        "answers before reading it, in plain text",
        "content": {"text/plain": {"schema": {"type": "string"}}},
    },
    "NotJson": {"description": "a POST must say Content-Type: application/json (a cross-site form cannot)", **AN_ERROR},
    "Unavailable": {"description": "MySQL or Redis does not answer", **AN_ERROR},
}


def answers(ok: dict, *others: str) -> dict:
    """The operation's own answers plus the shared ones, named by status code."""
    names = {
        "400": "BadRequest",
        "401": "Unauthorized",
        "403": "Forbidden",
        "413": "TooLarge",
        "415": "NotJson",
        "503": "Unavailable",
    }
    return {**ok, **{code: {"$ref": f"#/components/responses/{names[code]}"} for code in others}}


def steer(action: str, of: int) -> dict:
    body = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "partition": {
                "type": ["integer", "null"],
                "minimum": 0,
                "maximum": of - 1,
                "description": "One partition; without it (or null) the whole campaign.",
            }
        },
    }
    return {
        "post": {
            "summary": f'{action.capitalize()} the campaign, or one partition with {{"partition": K}}.',
            "requestBody": {"required": False, **json_body(body)},
            "responses": answers(
                {"200": {"description": action, **json_body({"$ref": "#/components/schemas/Steered"})}},
                "400",
                "401",
                "403",
                "413",
                "415",
                "503",
            ),
        }
    }


def resend(of: int) -> dict:
    body = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "reason": {
                "type": ["string", "null"],
                "description": "Only rows whose failure reason contains this text; without it (or null, "
                "or empty) any reason.",
            },
            "partition": {
                "type": ["integer", "null"],
                "minimum": 0,
                "maximum": of - 1,
                "description": "Only this partition's rows (id % N = K); without it (or null) all.",
            },
            "undelivered": {
                "type": ["boolean", "null"],
                "description": "true: instead of failed rows, the sent rows whose message failed after the "
                "gateway accepted it (a failed receipt); not with a reason.",
            },
        },
    }
    return {
        "post": {
            "summary": "Send failed rows again: set them back to pending and forget why they failed. Each goes out "
            "with a new idempotency key; producers queue them within FULL_SCAN_INTERVAL.",
            "requestBody": {"required": False, **json_body(body)},
            "responses": answers(
                {
                    "200": {
                        "description": "how many rows were set back",
                        **json_body({"$ref": "#/components/schemas/Resent"}),
                    }
                },
                "400",
                "401",
                "403",
                "413",
                "415",
                "503",
            ),
        }
    }


def opt_out_change(summary: str, body: dict, answer: str) -> dict:
    return {
        "post": {
            "summary": summary,
            "requestBody": {"required": True, **json_body(body)},
            "responses": answers(
                {
                    "200": {"description": "done", **json_body({"$ref": f"#/components/schemas/{answer}"})},
                    "400": {
                        "description": "a body outside this document, or a phone that is not one; nothing was changed",
                        **AN_ERROR,
                    },
                },
                "401",
                "403",
                "413",
                "415",
                "503",
            ),
        }
    }


def opt_outs() -> dict:
    return {
        "get": {
            "summary": 'The opt-out list: phones consumers never message (their rows fail "opted out"), latest first.',
            "parameters": [
                {
                    "name": "limit",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "integer", "minimum": 1, "maximum": MAX_OPT_OUT_LIST, "default": OPT_OUT_LIST},
                    "description": "How many of the latest to list.",
                }
            ],
            "responses": answers(
                {
                    "200": {"description": "the list", **json_body({"$ref": "#/components/schemas/OptOuts"})},
                    "400": {
                        "description": f"a limit that is not a whole number from 1 to {MAX_OPT_OUT_LIST:,}",
                        **AN_ERROR,
                    },
                },
                "401",
                "403",
                "503",
            ),
        },
        **opt_out_change(
            'Add phones to the opt-out list, all or none (source "api"); a phone already there keeps its first reason.',
            {
                "type": "object",
                "required": ["phones"],
                "additionalProperties": False,
                "properties": {
                    "phones": PHONES,
                    "reason": {"type": ["string", "null"], "description": "Why (cut to 255 characters)."},
                },
            },
            "OptedOut",
        ),
    }


def document(of: int) -> dict:
    """The document for a service steering `of` partitions."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "WhatsApp campaign",
            "version": "1",
            "description": "Progress of the campaign, pause/resume, re-sending failed rows, adding messages to it, "
            "and its opt-out list.",
        },
        "components": {
            "securitySchemes": {"basic": {"type": "http", "scheme": "basic"}},
            "schemas": {
                "Message": MESSAGE,
                "Error": ERROR,
                "Queued": QUEUED,
                "Steered": STEERED,
                "Resent": RESENT,
                "Health": HEALTH,
                "Status": STATUS,
                "Partition": PARTITION,
                "Sender": SENDER,
                "OptOut": OPT_OUT,
                "OptOuts": OPT_OUTS,
                "OptedOut": OPTED_OUT,
                "OptedIn": OPTED_IN,
            },
            "responses": RESPONSES,
        },
        "security": [{"basic": []}],
        "paths": {
            "/": {
                "get": {
                    "summary": "The dashboard page.",
                    "responses": answers(
                        {"200": {"description": "page", "content": {"text/html": {"schema": {"type": "string"}}}}},
                        "401",
                        "403",
                    ),
                }
            },
            "/health": {
                "get": {
                    "summary": "Liveness of the service and its MySQL and Redis (no auth).",
                    "security": [],
                    "responses": answers(
                        {
                            "200": {"description": "all answer", **json_body({"$ref": "#/components/schemas/Health"})},
                            "503": {
                                "description": "MySQL or Redis does not answer",
                                **json_body({"$ref": "#/components/schemas/Health"}),
                            },
                        },
                        "403",
                    ),
                }
            },
            "/api/status": {
                "get": {
                    "summary": "The campaign's progress.",
                    "responses": answers(
                        {"200": {"description": "status", **json_body({"$ref": "#/components/schemas/Status"})}},
                        "401",
                        "403",
                        "503",
                    ),
                }
            },
            "/api/messages": {
                "post": {
                    "summary": "Add one message or a list as pending rows of the campaign table, all or none.",
                    "parameters": [
                        {
                            "name": "Idempotency-Key",
                            "in": "header",
                            "required": False,
                            "schema": {"type": "string", "pattern": f"^{IDEMPOTENCY_KEY.pattern}$"},
                            "description": "Makes a retry safe: a request repeating a key adds nothing and gets the "
                            "first request's ids, with the header Idempotent-Replayed: true.",
                        }
                    ],
                    "requestBody": {
                        "required": True,
                        **json_body(
                            {
                                "oneOf": [
                                    {"$ref": "#/components/schemas/Message"},
                                    {
                                        "type": "array",
                                        "minItems": 1,
                                        "maxItems": MAX_BATCH,
                                        "items": {"$ref": "#/components/schemas/Message"},
                                    },
                                ]
                            }
                        ),
                    },
                    "responses": answers(
                        {
                            "202": {
                                "description": "queued",
                                **json_body({"$ref": "#/components/schemas/Queued"}),
                                "headers": {
                                    "Idempotent-Replayed": {
                                        "schema": {"const": "true"},
                                        "description": "the first request's ids",
                                    }
                                },
                            },
                            "400": {
                                "description": "bad input, or a value the table refuses; nothing was added",
                                **AN_ERROR,
                            },
                            "422": {
                                "description": "the Idempotency-Key was used before with a different body",
                                **AN_ERROR,
                            },
                        },
                        "401",
                        "403",
                        "413",
                        "415",
                        "503",
                    ),
                }
            },
            "/api/pause": steer("pause", of),
            "/api/resume": steer("resume", of),
            "/api/resend": resend(of),
            "/api/optouts": opt_outs(),
            "/api/optouts/remove": opt_out_change(
                "Take phones off the opt-out list, all or none: consumers message them again.",
                {
                    "type": "object",
                    "required": ["phones"],
                    "additionalProperties": False,
                    "properties": {"phones": PHONES},
                },
                "OptedIn",
            ),
            "/openapi.json": {
                "get": {
                    "summary": "This document.",
                    "responses": answers(
                        {"200": {"description": "OpenAPI 3.1", **json_body({"type": "object"})}}, "401", "403"
                    ),
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus counters of the web service: receipts by status, refusals, opt-outs.",
                    "responses": answers(
                        {
                            "200": {
                                "description": "Prometheus text format",
                                "content": {"text/plain": {"schema": {"type": "string"}}},
                            }
                        },
                        "401",
                        "403",
                    ),
                }
            },
        },
    }
