"""The API described as an OpenAPI 3.1 document, served at `GET /api/openapi.json`.

Written by hand, as plain data, so it reads like the API reference it is. The fuzz
tests use it to know which endpoints take which fields.
"""

from __future__ import annotations

import re

from flask import jsonify

from digits import __version__
from digits.png import DATA_URL_PREFIX

DRAWING_PATTERN = "^" + re.escape(DATA_URL_PREFIX)

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"


def ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def json_response(description: str, schema: dict | None = None) -> dict:
    return {"description": description, "content": {JSON: {"schema": schema or ref("Error")}}}


def body(schema: dict, *types: str) -> dict:
    return {"required": True, "content": {t: {"schema": schema} for t in types or (JSON,)}}


ERRORS = {
    "400": json_response("the input is malformed; the message says which field and why"),
    "413": json_response("the body is larger than 1 MB"),
    "415": json_response("the body is neither JSON nor a form"),
    "503": json_response("storage is unreachable; nothing was saved, try again"),
}
RATE_LIMITED = {
    "429": {
        "description": "too many requests from this address (per worker process)",
        "headers": {"Retry-After": {"schema": {"type": "integer"}}},
        "content": {JSON: {"schema": ref("Error")}},
    }
}
# A read (or a delete) when storage fails: nothing to save, so only "try again".
STORAGE_DOWN = {"503": json_response("storage is unreachable right now; try again")}
# A public read (digits/public.py): asked again with its ETag, a 304; refused at once while the
# worker is busy with other reads (503 with Retry-After), as when storage fails.
PUBLIC_READ = {
    "304": {"description": "unchanged since the ETag sent in If-None-Match"},
    "503": {
        "description": "storage is unreachable, or this worker is busy with other reads "
        "(then with Retry-After); try again",
        "headers": {"Retry-After": {"schema": {"type": "integer"}}},
        "content": {JSON: {"schema": ref("Error")}},
    },
}
NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
ADMIN = {
    "security": [{"adminToken": []}],
}
ADMIN_ERRORS = {
    "401": json_response("no `Authorization: Bearer` token was sent"),
    "403": json_response("wrong token, or admin endpoints are off (ADMIN_TOKEN unset)"),
}

SCHEMAS = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"type": "string"}},
    },
    "Drawing": {
        "type": "object",
        "required": ["imageBase64", "digit"],
        "properties": {
            "imageBase64": {
                "type": "string",
                "description": f"{DATA_URL_PREFIX}… of the 200×200 canvas",
                "pattern": DRAWING_PATTERN,
            },
            "digit": {
                "description": "the label, 0–9",
                "oneOf": [
                    {"type": "integer", "minimum": 0, "maximum": 9},
                    {"type": "string", "pattern": "^[0-9]$"},
                ],
            },
        },
    },
    "Saved": {
        "type": "object",
        "required": ["saved", "name"],
        "properties": {"saved": {"const": True}, "name": {"type": "string"}},
    },
    "PredictRequest": {
        "type": "object",
        "required": ["imageBase64"],
        "properties": {"imageBase64": {"type": "string", "pattern": DRAWING_PATTERN}},
    },
    "NetAnswer": {
        "type": "object",
        "required": ["digit", "probabilities", "version"],
        "properties": {
            "digit": {"type": ["integer", "null"], "minimum": 0, "maximum": 9},
            "probabilities": {
                "description": "one per digit 0–9; null for an empty canvas",
                "type": ["array", "null"],
                "items": {"type": "number"},
                "minItems": 10,
                "maxItems": 10,
            },
            "version": {"type": "string", "description": "the net's version that answered"},
        },
    },
    "Prediction": {
        "type": "object",
        "required": ["id", "empty", "fnn", "cnn", "preview", "versions"],
        "properties": {
            "id": {"type": "string", "description": "quote it in POST /api/feedback"},
            "empty": {"type": "boolean", "description": "true when the canvas holds no ink"},
            "fnn": ref("NetAnswer"),
            "cnn": ref("NetAnswer"),
            "preview": {"type": "string", "description": "the 28×28 input as a data: URL"},
            "versions": {
                "type": "object",
                "description": "per net: the version serving now, and the one shipped",
                "additionalProperties": {
                    "type": "object",
                    "required": ["current", "original"],
                    "properties": {"current": {"type": "string"}, "original": {"type": "string"}},
                },
            },
            "original": {
                "type": "object",
                "description": "the shipped nets' answers, only while a net has learned since",
                "additionalProperties": ref("NetAnswer"),
            },
        },
    },
    "Counts": {
        "type": "object",
        "required": ["counts", "total"],
        "properties": {
            "counts": {
                "description": 'drawings per label, "0"–"9" and "none" (not a digit)',
                "type": "object",
                "additionalProperties": {"type": "integer", "minimum": 0},
            },
            "total": {"type": "integer", "minimum": 0},
        },
    },
    "Feedback": {
        "type": "object",
        "required": ["id", "digit", "consent"],
        "properties": {
            "id": {"type": "string", "description": "the id of an earlier prediction"},
            "digit": {
                "description": "the right digit, or null for 'not a digit'",
                "type": ["integer", "null"],
                "minimum": 0,
                "maximum": 9,
            },
            "consent": {
                "type": "boolean",
                "description": "may the drawing be kept in the dataset",
            },
        },
    },
}

SCHEMAS["ExportJob"] = {
    "type": "object",
    "required": ["id", "state", "url", "done", "total", "created", "started", "finished", "error"],
    "properties": {
        "id": {"type": "string"},
        "state": {"enum": ["queued", "running", "done", "failed"]},
        "url": {"type": "string", "description": "this status; poll it every few seconds"},
        "done": {"type": "integer", "minimum": 0, "description": "drawings written so far"},
        "total": {
            "type": ["integer", "null"],
            "minimum": 0,
            "description": "drawings to write, once the worker has started",
        },
        "created": {"type": "string", "format": "date-time"},
        "started": {"type": ["string", "null"], "format": "date-time"},
        "finished": {"type": ["string", "null"], "format": "date-time"},
        "bytes": {"type": ["integer", "null"], "description": "the zip's size, once done"},
        "error": {
            "type": ["string", "null"],
            "description": "why it failed; while queued again, why the last attempt stopped",
        },
        "download": {
            "type": "string",
            "description": "once done: on S3 a presigned link good for an hour (a new one with "
            "each status), on a local folder this app's download route (admin token)",
        },
    },
}
JOB_ID = {"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}}
NO_SUCH_EXPORT = {"404": json_response("no such export (finished ones are kept a day at most)")}
DATABASE_DOWN = {"503": json_response("the database is unreachable right now; try again")}

SCHEMAS["Rollback"] = {
    "type": "object",
    "required": ["net", "version"],
    "properties": {
        "net": {"enum": ["fnn", "cnn"]},
        "version": {"type": "string", "description": '"original" or a published version'},
    },
}

SCHEMAS["Pin"] = {
    "type": "object",
    "required": ["net", "version", "pinned"],
    "properties": {
        "net": {"enum": ["fnn", "cnn"]},
        "version": {"type": "string", "description": "a published version (not the original)"},
        "pinned": {"type": "boolean", "description": "true: never pruned; false: prunable again"},
    },
}

PATHS = {
    "/hook": {
        "post": {
            "summary": "Save a labelled drawing",
            "requestBody": body(ref("Drawing"), FORM, JSON),
            "responses": {
                "201": json_response("saved durably", ref("Saved")),
                **ERRORS,
                **RATE_LIMITED,
            },
        }
    },
    "/api/predict": {
        "post": {
            "summary": "Recognise a drawing with both nets",
            "requestBody": body(ref("PredictRequest"), JSON, FORM),
            "responses": {
                "200": json_response("both nets' answers", ref("Prediction")),
                **ERRORS,
                "503": json_response("the nets cannot be loaded right now; try again"),
            },
        }
    },
    "/api/feedback": {
        "post": {
            "summary": "Say which digit a prediction should have been (once per prediction)",
            "requestBody": body(ref("Feedback"), JSON),
            "responses": {
                "202": json_response("recorded; the trainer learns it later", {"type": "object"}),
                "404": json_response("no prediction has this id"),
                "409": json_response("this prediction has already taken feedback"),
                **ERRORS,
                "415": json_response("the body is not JSON: a form cannot say true, false or null"),
                **RATE_LIMITED,
            },
        }
    },
    "/api/stats": {
        "get": {
            "summary": "Accuracy of each net over time, from feedback",
            "responses": {
                "200": json_response("the statistics", {"type": "object"}),
                **PUBLIC_READ,
                **RATE_LIMITED,
            },
        }
    },
    "/api/dataset/counts": {
        "get": {
            "summary": "Drawings per label",
            "responses": {
                "200": json_response("counts and total", ref("Counts")),
                **PUBLIC_READ,
                **RATE_LIMITED,
            },
        }
    },
    "/api/dataset": {
        "get": {
            "summary": "A page of the gallery, newest first",
            "parameters": [
                {"name": "label", "in": "query", "schema": {"type": "string"}},
                {"name": "page", "in": "query", "schema": {"type": "integer", "minimum": 1}},
                {
                    "name": "per_page",
                    "in": "query",
                    "schema": {"type": "integer", "minimum": 1, "maximum": 200},
                },
            ],
            "responses": {
                "200": json_response("items, page, pages, total", {"type": "object"}),
                "400": ERRORS["400"],
                **PUBLIC_READ,
                **RATE_LIMITED,
            },
        }
    },
    "/api/dataset/image/{name}": {
        "get": {
            "summary": "One drawing's PNG",
            "parameters": [NAME],
            "responses": {
                "200": {
                    "description": "the PNG, with an ETag and `Cache-Control: no-cache`",
                    "content": {"image/png": {}},
                },
                "412": json_response("the drawing's ETag does not match the If-Match sent"),
                "404": json_response("no such drawing"),
                **PUBLIC_READ,
            },
        }
    },
    "/api/dataset/exports": {
        "post": {
            "summary": "Admin: start an export of every drawing plus labels.csv, as a zip",
            "description": "The trainer worker builds it in the background; poll the job's url "
            "and download its link once it is done. While one is queued or running, the answer "
            "is that one. No body is needed.",
            **ADMIN,
            "responses": {
                "202": {
                    "description": "queued (or the one already under way)",
                    "headers": {"Location": {"schema": {"type": "string"}}},
                    "content": {JSON: {"schema": ref("ExportJob")}},
                },
                **ADMIN_ERRORS,
                "503": json_response("storage or the database is unreachable; nothing was queued"),
            },
        }
    },
    "/api/dataset/exports/{job_id}": {
        "get": {
            "summary": "Admin: an export's state, progress and, once done, its download link",
            **ADMIN,
            "parameters": [JOB_ID],
            "responses": {
                "200": json_response("the job", ref("ExportJob")),
                **NO_SUCH_EXPORT,
                **ADMIN_ERRORS,
                **DATABASE_DOWN,
            },
        }
    },
    "/api/dataset/exports/{job_id}/download": {
        "get": {
            "summary": "Admin: a finished export's zip",
            **ADMIN,
            "parameters": [JOB_ID],
            "responses": {
                "200": {
                    "description": "the zip (a local folder), with its Content-Length",
                    "content": {"application/zip": {}},
                },
                "206": {
                    "description": "the part of the zip a Range asks for: a download that "
                    "broke off resumes (`curl -C -`; If-Range with the ETag)",
                    "content": {"application/zip": {}},
                },
                "303": {
                    "description": "on S3: see the presigned link in Location",
                    "headers": {"Location": {"schema": {"type": "string"}}},
                    "content": {JSON: {"schema": ref("ExportJob")}},
                },
                **NO_SUCH_EXPORT,
                "409": json_response("the export is not done yet"),
                "416": json_response("the Range starts past the end of the zip"),
                **ADMIN_ERRORS,
                **STORAGE_DOWN,
            },
        }
    },
    "/api/dataset/export": {
        "get": {
            "summary": "Admin (deprecated): the zip of a recent export, or start one",
            "description": "Kept for scripts written when this built the zip in the request. An "
            "export finished in the last 10 minutes: 303 to its download (follow redirects to "
            "get the zip). Otherwise an export starts, or the one under way is joined, and the "
            "answer is 409 with the job's url: ask again after Retry-After seconds, or poll the "
            "job. New code: POST /api/dataset/exports.",
            "deprecated": True,
            **ADMIN,
            "responses": {
                "303": {
                    "description": "a recent export: its download link in Location",
                    "headers": {"Location": {"schema": {"type": "string"}}},
                    "content": {JSON: {"schema": ref("ExportJob")}},
                },
                "409": {
                    "description": "no recent export: one was started (or joined); try later",
                    "headers": {
                        "Location": {"schema": {"type": "string"}},
                        "Retry-After": {"schema": {"type": "integer"}},
                    },
                    "content": {JSON: {"schema": {"allOf": [ref("Error"), ref("ExportJob")]}}},
                },
                **ADMIN_ERRORS,
                **STORAGE_DOWN,
            },
        }
    },
    "/api/dataset/{name}": {
        "delete": {
            "summary": "Admin: delete a bad sample",
            **ADMIN,
            "parameters": [NAME],
            "responses": {
                "200": json_response("deleted", {"type": "object"}),
                "404": json_response("no such drawing"),
                **ADMIN_ERRORS,
                **STORAGE_DOWN,
            },
        }
    },
    "/api/models": {
        "get": {
            "summary": "The model versions served now, and their history",
            "responses": {
                "200": json_response("versions per net", {"type": "object"}),
                **STORAGE_DOWN,
            },
        }
    },
    "/api/models/rollback": {
        "post": {
            "summary": "Admin: serve an earlier version of a net (or the original) again",
            **ADMIN,
            "requestBody": body(ref("Rollback"), JSON, FORM),
            "responses": {
                "200": json_response("the new pointer", {"type": "object"}),
                "404": json_response("the net has no such version"),
                "422": json_response(
                    "the version cannot be served (its model.tflite is missing or does not load);"
                    " the pointer did not move"
                ),
                **ERRORS,
                **ADMIN_ERRORS,
            },
        }
    },
    "/api/models/pin": {
        "post": {
            "summary": "Admin: keep a version of a net whatever KEEP_VERSIONS says, or stop",
            **ADMIN,
            "requestBody": body(ref("Pin")),
            "responses": {
                "200": json_response("the version's pin now", ref("Pin")),
                "404": json_response("the net has no such version"),
                **ERRORS,
                "415": json_response("the body is not JSON: a form cannot say true or false"),
                **ADMIN_ERRORS,
            },
        }
    },
    "/healthz": {
        "get": {
            "summary": "Liveness, and whether storage and the database are reachable",
            "responses": {
                "200": json_response(
                    "the app answers; storage or the database may still be unavailable",
                    {
                        "type": "object",
                        "properties": {
                            "status": {"const": "ok"},
                            "storage": {"enum": ["ok", "unavailable"]},
                            "database": {"enum": ["ok", "unavailable"]},
                        },
                    },
                )
            },
        }
    },
    "/api/openapi.json": {
        "get": {
            "summary": "This document",
            "responses": {"200": json_response("OpenAPI 3.1", {"type": "object"})},
        }
    },
}


def document() -> dict:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Digits",
            "version": __version__,
            "description": "Draw a digit; two nets recognise it; your feedback teaches them.",
        },
        "paths": PATHS,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "adminToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "the ADMIN_TOKEN setting",
                }
            },
        },
    }


def openapi_json():
    return jsonify(document())
