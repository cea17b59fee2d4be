//! Dispatch plans: the wire format, validation into domain types, and storage.

mod store;

pub use store::{NewPlan, PlanStore, StoredPlan, SubmitOutcome};

use serde::{Deserialize, Serialize};
use time::Date;
use time::macros::format_description;

/// Bounds a plan must respect. Set from `[limits]` in the settings.
#[derive(Debug, Clone, Copy)]
pub struct PlanLimits {
    pub max_stops: usize,
}

/// A plan exactly as the client sent it. Unknown fields are refused so that a typo in a field
/// name is an error, not a silently dropped value.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({
    "route_id": "north-2026-11-23", "team": "north", "planned_date": "2026-11-23",
    "stops": [
        {"id": "depot", "latitude": 52.37, "longitude": 4.89,
         "time_window": {"start": "08:00", "end": "10:00"}},
        {"id": "n2", "latitude": 52.09, "longitude": 5.12},
    ],
})))]
pub struct PlanRequest {
    pub route_id: String,
    pub team: String,
    pub planned_date: String,
    pub stops: Vec<StopRequest>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StopRequest {
    pub id: String,
    pub latitude: f64,
    pub longitude: f64,
    #[serde(default)]
    pub time_window: Option<TimeWindowRequest>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TimeWindowRequest {
    pub start: String,
    pub end: String,
}

/// One reason a plan is invalid, pointing at the field (JSON Pointer, RFC 6901).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    pub pointer: String,
    pub detail: String,
}

/// An identifier inside a plan: 1 to 64 of `A-Z a-z 0-9 . _ : -`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct PlanToken(String);

impl PlanToken {
    /// Takes the request's own string: a plan of 20 stops is 22 tokens, and copying each was
    /// an allocation per token on every submission.
    pub fn parse(text: String) -> Result<Self, String> {
        if text.is_empty() || text.len() > 64 {
            return Err("must have 1 to 64 characters".into());
        }
        if !text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-'))
        {
            return Err("may only use A-Z a-z 0-9 . _ : -".into());
        }
        Ok(Self(text))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    pub route_id: PlanToken,
    pub team: PlanToken,
    pub planned_date: Date,
    pub stops: Vec<Stop>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stop {
    pub id: PlanToken,
    pub latitude: f64,
    pub longitude: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_window: Option<TimeWindow>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimeWindow {
    pub start: String,
    pub end: String,
}

impl Plan {
    /// Validates a request into a plan, collecting every problem rather than the first; except
    /// that a plan with no stops or too many is refused without reading each stop, so an
    /// oversized plan costs bounded work.
    pub fn parse(request: PlanRequest, limits: PlanLimits) -> Result<Self, Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut field = |pointer: &str, result: Result<PlanToken, String>| match result {
            Ok(token) => Some(token),
            Err(detail) => {
                errors.push(FieldError {
                    pointer: pointer.to_owned(),
                    detail,
                });
                None
            }
        };
        let route_id = field("/route_id", PlanToken::parse(request.route_id));
        let team = field("/team", PlanToken::parse(request.team));
        let planned_date = Date::parse(
            &request.planned_date,
            format_description!("[year]-[month]-[day]"),
        )
        .map_err(|_| FieldError {
            pointer: "/planned_date".into(),
            detail: "must be a date as YYYY-MM-DD".into(),
        });
        let planned_date = match planned_date {
            Ok(date) => Some(date),
            Err(e) => {
                errors.push(e);
                None
            }
        };
        if request.stops.is_empty() || request.stops.len() > limits.max_stops {
            errors.push(FieldError {
                pointer: "/stops".into(),
                detail: format!(
                    "must hold 1 to {} stops, not {}",
                    limits.max_stops,
                    request.stops.len()
                ),
            });
            return Err(errors);
        }
        let mut stops = Vec::with_capacity(request.stops.len());
        // Each stop's errors with its index, so that the duplicate ids found after the loop
        // (by borrowing the parsed ids, not copying each) go back in document order.
        let mut stop_errors = Vec::new();
        for (index, stop) in request.stops.into_iter().enumerate() {
            match Stop::parse(stop, index) {
                Ok(stop) => stops.push((index, stop)),
                Err(found) => stop_errors.extend(found.into_iter().map(|e| (index, e))),
            }
        }
        let mut seen = std::collections::HashSet::with_capacity(stops.len());
        for (index, stop) in &stops {
            if !seen.insert(stop.id.as_str()) {
                let error = FieldError {
                    pointer: format!("/stops/{index}/id"),
                    detail: format!("stop id `{}` appears more than once", stop.id.as_str()),
                };
                stop_errors.push((*index, error));
            }
        }
        stop_errors.sort_by_key(|(index, _)| *index);
        errors.extend(stop_errors.into_iter().map(|(_, error)| error));
        let stops = stops.into_iter().map(|(_, stop)| stop).collect();
        match (route_id, team, planned_date) {
            (Some(route_id), Some(team), Some(planned_date)) if errors.is_empty() => Ok(Self {
                route_id,
                team,
                planned_date,
                stops,
            }),
            _ => Err(errors),
        }
    }
}

impl Stop {
    fn parse(stop: StopRequest, index: usize) -> Result<Self, Vec<FieldError>> {
        let mut errors = Vec::new();
        let at = |name: &str| format!("/stops/{index}/{name}");
        let id = PlanToken::parse(stop.id)
            .map_err(|detail| {
                errors.push(FieldError {
                    pointer: at("id"),
                    detail,
                })
            })
            .ok();
        if !(-90.0..=90.0).contains(&stop.latitude) {
            errors.push(FieldError {
                pointer: at("latitude"),
                detail: "must be between -90 and 90".into(),
            });
        }
        if !(-180.0..=180.0).contains(&stop.longitude) {
            errors.push(FieldError {
                pointer: at("longitude"),
                detail: "must be between -180 and 180".into(),
            });
        }
        let time_window = stop.time_window.and_then(|window| {
            let format = format_description!("[hour]:[minute]");
            match (
                time::Time::parse(&window.start, format),
                time::Time::parse(&window.end, format),
            ) {
                (Ok(start), Ok(end)) if start <= end => Some(TimeWindow {
                    start: window.start,
                    end: window.end,
                }),
                (Ok(_), Ok(_)) => {
                    errors.push(FieldError {
                        pointer: at("time_window"),
                        detail: "start must not be after end".into(),
                    });
                    None
                }
                _ => {
                    errors.push(FieldError {
                        pointer: at("time_window"),
                        detail: "start and end are times as HH:MM".into(),
                    });
                    None
                }
            }
        });
        match id {
            Some(id) if errors.is_empty() => Ok(Self {
                id,
                latitude: stop.latitude,
                longitude: stop.longitude,
                time_window,
            }),
            _ => Err(errors),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: PlanLimits = PlanLimits { max_stops: 3 };

    fn request(json: &str) -> PlanRequest {
        serde_json::from_str(json).unwrap()
    }

    fn stop(id: &str, lat: f64) -> String {
        format!(r#"{{"id":"{id}","latitude":{lat},"longitude":4.0}}"#)
    }

    fn plan_with(stops: &[String]) -> PlanRequest {
        request(&format!(
            r#"{{"route_id":"r1","team":"north","planned_date":"2026-11-23","stops":[{}]}}"#,
            stops.join(",")
        ))
    }

    #[test]
    fn the_documented_example_is_a_valid_plan() {
        use utoipa::PartialSchema;
        let schema = serde_json::to_value(PlanRequest::schema()).unwrap();
        let example: PlanRequest = serde_json::from_value(schema["examples"][0].clone()).unwrap();
        let plan = Plan::parse(example, LIMITS).unwrap();
        assert_eq!(plan.stops.len(), 2);
    }

    #[test]
    fn a_valid_plan_parses() {
        let plan = Plan::parse(plan_with(&[stop("a", 52.0), stop("b", 53.0)]), LIMITS).unwrap();
        assert_eq!(plan.stops.len(), 2);
        assert_eq!(plan.team.as_str(), "north");
    }

    #[test]
    fn latitude_out_of_range_names_the_field() {
        let errors = Plan::parse(plan_with(&[stop("a", 91.0)]), LIMITS).unwrap_err();
        assert_eq!(errors[0].pointer, "/stops/0/latitude");
    }

    #[test]
    fn too_many_stops_is_refused() {
        let stops: Vec<String> = (0..4).map(|i| stop(&format!("s{i}"), 1.0)).collect();
        let errors = Plan::parse(plan_with(&stops), LIMITS).unwrap_err();
        assert_eq!(errors[0].pointer, "/stops");
    }

    #[test]
    fn duplicate_stop_ids_are_refused() {
        let errors = Plan::parse(plan_with(&[stop("a", 1.0), stop("a", 2.0)]), LIMITS).unwrap_err();
        assert_eq!(errors[0].pointer, "/stops/1/id");
    }

    #[test]
    fn errors_of_several_stops_come_in_document_order_duplicates_included() {
        let errors = Plan::parse(
            plan_with(&[stop("a", 1.0), stop("a", 2.0), stop("c", 91.0)]),
            LIMITS,
        )
        .unwrap_err();
        let pointers: Vec<&str> = errors.iter().map(|e| e.pointer.as_str()).collect();
        assert_eq!(pointers, ["/stops/1/id", "/stops/2/latitude"]);
    }

    #[test]
    fn non_finite_coordinates_are_refused() {
        let mut req = plan_with(&[stop("a", 1.0)]);
        req.stops[0].longitude = f64::NAN;
        assert!(Plan::parse(req, LIMITS).is_err());
    }

    #[test]
    fn unknown_fields_are_refused_by_the_parser() {
        let json =
            r#"{"route_id":"r1","team":"n","planned_date":"2026-11-23","stops":[],"extra":1}"#;
        assert!(serde_json::from_str::<PlanRequest>(json).is_err());
    }

    #[test]
    fn time_window_must_be_ordered() {
        let json = r#"{"route_id":"r1","team":"n","planned_date":"2026-11-23",
            "stops":[{"id":"a","latitude":1,"longitude":1,"time_window":{"start":"10:00","end":"09:00"}}]}"#;
        let errors = Plan::parse(request(json), LIMITS).unwrap_err();
        assert_eq!(errors[0].pointer, "/stops/0/time_window");
    }

    #[test]
    fn bad_date_and_bad_ids_are_all_reported() {
        let json = r#"{"route_id":"","team":"a b","planned_date":"23/11/2026","stops":[{"id":"a","latitude":1,"longitude":1}]}"#;
        let errors = Plan::parse(request(json), LIMITS).unwrap_err();
        let pointers: Vec<_> = errors.iter().map(|e| e.pointer.as_str()).collect();
        assert_eq!(pointers, ["/route_id", "/team", "/planned_date"]);
    }
}
