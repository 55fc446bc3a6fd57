//! The OpenAPI 3 document of the HTTP API, written at start-up from the
//! route table and the proto's descriptors: each schema is the canonical
//! proto3 JSON form of a message, so the document says what the server
//! reads and writes, and cannot drift from it.

use std::collections::BTreeMap;

use prost_reflect::{DescriptorPool, FieldDescriptor, Kind, MessageDescriptor, MethodDescriptor};
use serde_json::{Value, json};

use super::routes::{Input, Output, Route};

const STATUS: &str = "google.rpc.Status";

/// The document for `routes`, whose RPCs are `methods`.
pub fn document(pool: &DescriptorPool, routes: &[Route], methods: &[MethodDescriptor]) -> Value {
    let mut schemas = Schemas::default();
    if let Some(status) = pool.get_message_by_name(STATUS) {
        schemas.reference(&status);
    }
    let mut paths: BTreeMap<String, serde_json::Map<String, Value>> = BTreeMap::new();
    for (route, method) in routes.iter().zip(methods) {
        let operation = operation(route, method, &mut schemas);
        paths
            .entry(route.path.to_string())
            .or_default()
            .insert(route.method.as_str().to_ascii_lowercase(), operation);
    }
    paths
        .entry("/v1/openapi.json".to_string())
        .or_default()
        .insert(
            "get".into(),
            json!({
                "operationId": "OpenApi",
                "summary": "This document",
                "security": [{}],
                "responses": {
                    "200": {
                        "description": "The OpenAPI document",
                        "content": {"application/json": {"schema": {"type": "object"}}}
                    }
                }
            }),
        );
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "rsvp",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Reservations over HTTP/JSON: every RPC of reservation.ReservationService \
                and reservation.ResourceService, bodies in the canonical proto3 JSON mapping. \
                A failed call answers with the HTTP status of the standard gRPC mapping \
                (a reservation conflict is 409) and a google.rpc.Status body carrying the same \
                details a gRPC client reads.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas.done(),
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API token or a JSON Web Token, as the server is configured; \
                        not needed when the server runs without authentication."
                }
            }
        },
        "security": [{}, {"bearer": []}],
    })
}

fn operation(route: &Route, method: &MethodDescriptor, schemas: &mut Schemas) -> Value {
    let input = method.input();
    let mut parameters = Vec::new();
    if let Some(param) = route.param {
        // Reservations and bookings are named by UUIDs; resources by
        // their own ids.
        let schema = if route.path.starts_with("/v1/resources/") {
            json!({"type": "string", "minLength": 1, "maxLength": 64})
        } else {
            json!({"type": "string", "format": "uuid"})
        };
        parameters.push(json!({
            "name": "id",
            "in": "path",
            "required": true,
            "description": format!("The request's `{param}`."),
            "schema": schema,
        }));
    }
    if route.input == Input::Query {
        for field in input.fields() {
            if field.is_map() || route.param == Some(field.name()) {
                continue;
            }
            if let Kind::Message(m) = field.kind()
                && !m.full_name().starts_with("google.protobuf.")
            {
                continue;
            }
            let mut schema = schemas.field(&field);
            // Query strings carry text: numbers as their digits.
            if let Some(object) = schema.as_object_mut()
                && object.get("type") == Some(&json!("integer"))
            {
                object.insert("type".into(), json!("string"));
                object.insert("pattern".into(), json!("^-?[0-9]+$"));
                object.remove("format");
                object.remove("minimum");
                object.remove("maximum");
            }
            parameters.push(json!({
                "name": field.json_name(),
                "in": "query",
                "required": false,
                "schema": schema,
            }));
        }
    }
    if route.output == Output::Events {
        parameters.push(json!({
            "name": "Last-Event-ID",
            "in": "header",
            "required": false,
            "description": "Resume after this change id (a browser sends it on reconnecting).",
            "schema": {"type": "string", "pattern": "^-?[0-9]+$"},
        }));
    }
    let output = method.output();
    let answer = match route.output {
        Output::Json => json!({
            "description": format!("A {}", output.full_name()),
            "content": {"application/json": {"schema": schemas.reference(&output)}},
        }),
        Output::JsonLines => json!({
            "description": format!(
                "JSON lines: {{\"result\": {}}} each, or a last {{\"error\": {STATUS}}} when the stream fails",
                output.full_name()
            ),
            "content": {"application/x-ndjson": {"schema": {
                "type": "object",
                "properties": {
                    "result": schemas.reference(&output),
                    "error": {"$ref": format!("#/components/schemas/{STATUS}")},
                },
            }}},
        }),
        Output::Events => json!({
            "description": format!(
                "Server-Sent Events: each change's data is a {} whose change id is the event id; \
                 the first event, `start`, has the change id the stream starts after as its id \
                 and data; an `end` event's data is the {STATUS} the stream ended with.",
                output.full_name()
            ),
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        }),
    };
    let mut operation = json!({
        "operationId": method.name(),
        "summary": route.summary,
        "description": format!("The RPC {}.", method.full_name()),
        "parameters": parameters,
        "responses": {
            "200": answer,
            "default": {
                "description": "The call failed",
                "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{STATUS}")}}},
            },
        },
    });
    if route.input == Input::Body {
        let mut body = json!({"schema": schemas.reference(&input)});
        if let Some(example) = example(method.name()) {
            body["example"] = example;
        }
        operation["requestBody"] = json!({
            "required": false,
            "content": {"application/json": body},
        });
    }
    operation
}

/// The schemas of messages, each written once.
#[derive(Default)]
struct Schemas {
    written: BTreeMap<String, Value>,
}

impl Schemas {
    fn done(self) -> BTreeMap<String, Value> {
        self.written
    }

    /// A `$ref` to `message`'s schema, written first if it is not yet.
    fn reference(&mut self, message: &MessageDescriptor) -> Value {
        if let Some(inline) = well_known(message) {
            return inline;
        }
        let name = message.full_name().to_string();
        if !self.written.contains_key(&name) {
            // Placeholder first: messages may refer to themselves.
            self.written.insert(name.clone(), Value::Null);
            let mut properties = serde_json::Map::new();
            for field in message.fields() {
                properties.insert(field.json_name().to_string(), self.field(&field));
            }
            let mut schema = json!({
                "type": "object",
                "properties": properties,
                "additionalProperties": false,
            });
            if name == "google.protobuf.Any" {
                schema = json!({"type": "object", "properties": {"@type": {"type": "string"}}});
            }
            self.written.insert(name.clone(), schema);
        }
        json!({"$ref": format!("#/components/schemas/{name}")})
    }

    fn field(&mut self, field: &FieldDescriptor) -> Value {
        if field.is_map() {
            let value = match field.kind() {
                Kind::Message(entry) => self.kind(&entry.map_entry_value_field().kind()),
                kind => self.kind(&kind),
            };
            return json!({"type": "object", "additionalProperties": value});
        }
        let one = self.kind(&field.kind());
        if field.is_list() {
            json!({"type": "array", "items": one})
        } else {
            one
        }
    }

    fn kind(&mut self, kind: &Kind) -> Value {
        match kind {
            Kind::Double | Kind::Float => json!({"type": "number"}),
            Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
                json!({"type": "integer", "format": "int32"})
            }
            Kind::Uint32 | Kind::Fixed32 => {
                json!({"type": "integer", "format": "int64", "minimum": 0, "maximum": 4294967295u64})
            }
            Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => {
                json!({"type": "string", "format": "int64", "pattern": "^-?[0-9]{1,19}$"})
            }
            Kind::Uint64 | Kind::Fixed64 => {
                json!({"type": "string", "format": "uint64", "pattern": "^[0-9]{1,20}$"})
            }
            Kind::Bool => json!({"type": "boolean"}),
            Kind::String => json!({"type": "string"}),
            Kind::Bytes => json!({"type": "string", "format": "byte"}),
            Kind::Enum(e) => {
                let names: Vec<String> = e.values().map(|v| v.name().to_string()).collect();
                json!({"type": "string", "enum": names})
            }
            Kind::Message(m) => self.reference(m),
        }
    }
}

/// A request body that the server accepts, for the RPCs that take more
/// than an id.
fn example(rpc: &str) -> Option<Value> {
    let part = |resource: &str| json!({"resourceId": resource, "start": "2030-01-07T10:00:00Z", "end": "2030-01-07T11:00:00Z"});
    Some(match rpc {
        "Reserve" => json!({
            "reservation": {
                "userId": "alice",
                "resourceId": "room-1",
                "start": "2030-01-07T10:00:00Z",
                "end": "2030-01-07T11:00:00Z",
                "note": "team sync",
            },
            "hold": "1800s",
        }),
        "Query" => json!({"resourceId": "room-1"}),
        "Availability" => json!({
            "resourceIds": ["room-1"],
            "start": "2030-01-07T08:00:00Z",
            "end": "2030-01-07T18:00:00Z",
            "slotDuration": "1800s",
        }),
        "Book" => json!({"userId": "alice", "reservations": [part("room-1"), part("projector-1")]}),
        "CreateResource" => json!({
            "resource": {"id": "room-1", "displayName": "Room 1", "capacity": 1, "timeZone": "Europe/Paris"},
        }),
        "Update" => json!({"note": "moved to the afternoon"}),
        "UpdateResource" => json!({"resource": {"capacity": 2}, "updateMask": "capacity"}),
        _ => return None,
    })
}

/// The JSON forms proto3 gives the well-known types.
fn well_known(message: &MessageDescriptor) -> Option<Value> {
    Some(match message.full_name() {
        "google.protobuf.Timestamp" => json!({"type": "string", "format": "date-time"}),
        "google.protobuf.Duration" => {
            json!({"type": "string", "pattern": "^-?[0-9]+(\\.[0-9]{1,9})?s$"})
        }
        "google.protobuf.FieldMask" => json!({"type": "string"}),
        _ => return None,
    })
}
