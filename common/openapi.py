"""The web service's OpenAPI document, served at /openapi.json."""

from common.ingest import IDEMPOTENCY_KEY

MESSAGE = {
    "type": "object",
    "required": ["to"],
    "additionalProperties": False,
    "properties": {
        "to": {"type": "string", "example": "+62 812 3456 789",
               "description": "Phone number; national numbers need DEFAULT_REGION."},
        "template": {"type": "string", "description": "Must be the campaign's WHATSAPP_TEMPLATE if given."},
        "text": {"type": "string", "description": "Must be the campaign's WHATSAPP_TEXT if given."},
        "params": {"type": "object", "additionalProperties": {"type": ["string", "number"]},
                   "description": "Values for other columns of the campaign table (message variables)."},
    },
}
ERROR = {"type": "object", "properties": {"error": {"type": "string"}}}


def document() -> dict:
    json_body = lambda schema: {"content": {"application/json": {"schema": schema}}}  # noqa: E731
    return {
        "openapi": "3.1.0",
        "info": {"title": "WhatsApp campaign", "version": "1",
                 "description": "Progress of the campaign, pause/resume, and adding messages to it."},
        "components": {"securitySchemes": {"basic": {"type": "http", "scheme": "basic"}},
                       "schemas": {"Message": MESSAGE, "Error": ERROR}},
        "security": [{"basic": []}],
        "paths": {
            "/": {"get": {"summary": "The dashboard page (HTML).", "responses": {"200": {"description": "page"}}}},
            "/health": {"get": {"summary": "Liveness of the service and its MySQL and Redis (no auth).",
                                "security": [],
                                "responses": {"200": {"description": "all answer"},
                                              "503": {"description": "MySQL or Redis does not answer"}}}},
            "/api/status": {"get": {"summary": "The same data as `python -m common.status --json`.",
                                    "responses": {"200": {"description": "status"}}}},
            "/api/messages": {"post": {
                "summary": "Add one message or a list as pending rows of the campaign table, all or none.",
                "parameters": [{
                    "name": "Idempotency-Key", "in": "header", "required": False,
                    "schema": {"type": "string", "pattern": f"^{IDEMPOTENCY_KEY.pattern}$"},
                    "description": "Makes a retry safe: a request repeating a key adds nothing and gets the "
                                   "first request's ids, with the header Idempotent-Replayed: true."}],
                "requestBody": json_body({"oneOf": [{"$ref": "#/components/schemas/Message"},
                                                    {"type": "array", "maxItems": 10000,
                                                     "items": {"$ref": "#/components/schemas/Message"}}]}),
                "responses": {
                    "202": {"description": "queued",
                            **json_body({"type": "object", "properties": {
                                "status": {"const": "queued"},
                                "ids": {"type": "array", "items": {"type": "integer"}}}})},
                    "400": {"description": "bad input; nothing was added",
                            **json_body({"$ref": "#/components/schemas/Error"})},
                    "422": {"description": "the Idempotency-Key was used before with a different body",
                            **json_body({"$ref": "#/components/schemas/Error"})},
                    "401": {"description": "credentials needed"}}}},
            "/api/pause": {"post": {"summary": "Pause the campaign, or one partition with {\"partition\": K}.",
                                    "responses": {"200": {"description": "paused"}}}},
            "/api/resume": {"post": {"summary": "Resume the campaign, or one partition with {\"partition\": K}.",
                                     "responses": {"200": {"description": "resumed"}}}},
        },
    }
