//! Route calculation: per team, a nearest-neighbour tour improved by 2-opt on great-circle
//! distances. Small instances (tens to hundreds of stops) are what a dispatcher sends.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// A stop as read from the input file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputStop {
    pub id: String,
    pub team: String,
    pub latitude: f64,
    pub longitude: f64,
    #[serde(default)]
    pub window_start: Option<String>,
    #[serde(default)]
    pub window_end: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("cannot read the stops file `{path}`: {detail}")]
    Read { path: String, detail: String },
    #[error("the stops file `{path}` is not valid: {detail}")]
    Parse { path: String, detail: String },
}

/// Reads stops from a JSON array or a CSV file with the header
/// `id,team,latitude,longitude,window_start,window_end` (the window columns may be empty).
pub fn read_stops(path: &Path) -> Result<Vec<InputStop>, InputError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| InputError::Read {
        path: shown.clone(),
        detail: e.to_string(),
    })?;
    let parse = |detail: String| InputError::Parse {
        path: shown.clone(),
        detail,
    };
    let stops: Vec<InputStop> = if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"))
    {
        csv::ReaderBuilder::new()
            .trim(csv::Trim::All)
            .from_reader(text.as_bytes())
            .deserialize()
            .map(|row| {
                row.map(|mut stop: InputStop| {
                    // Empty CSV cells mean "no window".
                    stop.window_start = stop.window_start.filter(|s| !s.is_empty());
                    stop.window_end = stop.window_end.filter(|s| !s.is_empty());
                    stop
                })
            })
            .collect::<Result<_, _>>()
            .map_err(|e| parse(e.to_string()))?
    } else {
        serde_json::from_str(&text).map_err(|e| parse(e.to_string()))?
    };
    if stops.is_empty() {
        return Err(parse("it holds no stops".into()));
    }
    for stop in &stops {
        if !(-90.0..=90.0).contains(&stop.latitude) || !(-180.0..=180.0).contains(&stop.longitude) {
            return Err(parse(format!(
                "stop `{}` has coordinates out of range",
                stop.id
            )));
        }
    }
    Ok(stops)
}

/// Great-circle distance in kilometres (haversine, mean Earth radius).
pub fn distance_km(a: &InputStop, b: &InputStop) -> f64 {
    const EARTH_RADIUS_KM: f64 = 6371.0088;
    let (lat1, lat2) = (a.latitude.to_radians(), b.latitude.to_radians());
    let dlat = lat2 - lat1;
    let dlon = (b.longitude - a.longitude).to_radians();
    let h = (dlat / 2.0).sin().powi(2) + lat1.cos() * lat2.cos() * (dlon / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_KM * h.sqrt().min(1.0).asin()
}

/// Length of an open tour visiting `order` in sequence.
pub fn tour_length(stops: &[InputStop], order: &[usize]) -> f64 {
    order
        .windows(2)
        .map(|w| distance_km(&stops[w[0]], &stops[w[1]]))
        .sum()
}

/// An open tour starting at the first stop: nearest neighbour, then 2-opt until no reversal
/// shortens it.
pub fn order_stops(stops: &[InputStop]) -> Vec<usize> {
    if stops.len() < 3 {
        return (0..stops.len()).collect();
    }
    let n = stops.len();
    let d: Vec<Vec<f64>> = stops
        .iter()
        .map(|a| stops.iter().map(|b| distance_km(a, b)).collect())
        .collect();
    let mut order = Vec::with_capacity(n);
    let mut visited = vec![false; n];
    let mut current = 0;
    visited[0] = true;
    order.push(0);
    for _ in 1..n {
        let next = (0..n)
            .filter(|&j| !visited[j])
            .min_by(|&x, &y| d[current][x].total_cmp(&d[current][y]))
            .expect("an unvisited stop remains");
        visited[next] = true;
        order.push(next);
        current = next;
    }
    // 2-opt for an open path: reversing order[i..=j] replaces edges (i-1,i) and (j,j+1).
    let mut improved = true;
    while improved {
        improved = false;
        for i in 1..n - 1 {
            for j in i + 1..n {
                let before = d[order[i - 1]][order[i]]
                    + if j + 1 < n {
                        d[order[j]][order[j + 1]]
                    } else {
                        0.0
                    };
                let after = d[order[i - 1]][order[j]]
                    + if j + 1 < n {
                        d[order[i]][order[j + 1]]
                    } else {
                        0.0
                    };
                if after + 1e-9 < before {
                    order[i..=j].reverse();
                    improved = true;
                }
            }
        }
    }
    order
}

/// A plan as dispatch-api accepts it.
#[derive(Debug, Clone, Serialize)]
pub struct PlanBody {
    pub route_id: String,
    pub team: String,
    pub planned_date: String,
    pub stops: Vec<PlanStop>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlanStop {
    pub id: String,
    pub latitude: f64,
    pub longitude: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_window: Option<TimeWindow>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TimeWindow {
    pub start: String,
    pub end: String,
}

/// One ordered plan per team, teams in name order.
pub fn plan_routes(stops: &[InputStop], planned_date: &str) -> Vec<PlanBody> {
    let mut by_team: BTreeMap<&str, Vec<InputStop>> = BTreeMap::new();
    for stop in stops {
        by_team
            .entry(stop.team.as_str())
            .or_default()
            .push(stop.clone());
    }
    by_team
        .into_iter()
        .map(|(team, team_stops)| {
            let order = order_stops(&team_stops);
            PlanBody {
                route_id: format!("{team}-{planned_date}"),
                team: team.to_owned(),
                planned_date: planned_date.to_owned(),
                stops: order
                    .into_iter()
                    .map(|i| {
                        let s = &team_stops[i];
                        PlanStop {
                            id: s.id.clone(),
                            latitude: s.latitude,
                            longitude: s.longitude,
                            time_window: match (&s.window_start, &s.window_end) {
                                (Some(start), Some(end)) => Some(TimeWindow {
                                    start: start.clone(),
                                    end: end.clone(),
                                }),
                                _ => None,
                            },
                        }
                    })
                    .collect(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stop(id: &str, lat: f64, lon: f64) -> InputStop {
        InputStop {
            id: id.into(),
            team: "t".into(),
            latitude: lat,
            longitude: lon,
            window_start: None,
            window_end: None,
        }
    }

    #[test]
    fn one_degree_of_latitude_is_about_111_km() {
        let d = distance_km(&stop("a", 0.0, 0.0), &stop("b", 1.0, 0.0));
        assert!((d - 111.2).abs() < 0.1, "{d}");
    }

    #[test]
    fn stops_on_a_line_are_visited_in_line_order() {
        // Start at 0, the rest shuffled along a meridian: the optimal open tour is sorted.
        let stops: Vec<_> = [0.0, 3.0, 1.0, 4.0, 2.0]
            .iter()
            .enumerate()
            .map(|(i, lat)| stop(&i.to_string(), *lat, 0.0))
            .collect();
        let order = order_stops(&stops);
        let lats: Vec<f64> = order.iter().map(|&i| stops[i].latitude).collect();
        assert_eq!(lats, [0.0, 1.0, 2.0, 3.0, 4.0]);
    }

    #[test]
    fn two_opt_removes_a_crossing_that_nearest_neighbour_leaves() {
        // A square visited corner to corner: nearest neighbour from (0,0) can cross; the result
        // must be no longer than the perimeter path.
        let stops = vec![
            stop("a", 0.0, 0.0),
            stop("b", 0.0, 1.0),
            stop("c", 1.0, 0.0),
            stop("d", 1.0, 1.0),
            stop("e", 0.5, 0.5),
        ];
        let order = order_stops(&stops);
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(sorted, [0, 1, 2, 3, 4], "every stop exactly once");
        let best = tour_length(&stops, &order);
        // Brute force over all open tours from stop 0.
        let mut rest = vec![1, 2, 3, 4];
        let mut optimum = f64::MAX;
        permute(&mut rest, 0, &mut |p| {
            let mut tour = vec![0];
            tour.extend_from_slice(p);
            optimum = optimum.min(tour_length(&stops, &tour));
        });
        assert!(best <= optimum * 1.05, "2-opt {best} vs optimum {optimum}");
    }

    fn permute(items: &mut Vec<usize>, k: usize, visit: &mut impl FnMut(&[usize])) {
        if k == items.len() {
            visit(items);
            return;
        }
        for i in k..items.len() {
            items.swap(k, i);
            permute(items, k + 1, visit);
            items.swap(k, i);
        }
    }

    #[test]
    fn degenerate_inputs_one_stop_and_identical_points() {
        assert_eq!(order_stops(&[stop("a", 1.0, 1.0)]), [0]);
        let same = vec![
            stop("a", 1.0, 1.0),
            stop("b", 1.0, 1.0),
            stop("c", 1.0, 1.0),
        ];
        let mut order = order_stops(&same);
        order.sort();
        assert_eq!(order, [0, 1, 2]);
        assert_eq!(tour_length(&same, &[0, 1, 2]), 0.0);
    }

    #[test]
    fn one_plan_per_team_with_windows_carried_over() {
        let mut a = stop("a", 1.0, 1.0);
        a.team = "north".into();
        a.window_start = Some("08:00".into());
        a.window_end = Some("09:00".into());
        let mut b = stop("b", 2.0, 2.0);
        b.team = "south".into();
        let plans = plan_routes(&[a, b], "2026-11-23");
        assert_eq!(plans.len(), 2);
        assert_eq!(plans[0].team, "north");
        assert_eq!(plans[0].route_id, "north-2026-11-23");
        assert_eq!(
            plans[0].stops[0].time_window.as_ref().unwrap().start,
            "08:00"
        );
        assert!(plans[1].stops[0].time_window.is_none());
    }

    #[test]
    fn csv_and_json_inputs_read_the_same_stops() {
        let dir = tempfile::tempdir().unwrap();
        let csv_path = dir.path().join("stops.csv");
        std::fs::write(&csv_path, "id,team,latitude,longitude,window_start,window_end\ns1,north,52.1,4.3,08:00,09:00\ns2,north,52.2,4.4,,\n").unwrap();
        let json_path = dir.path().join("stops.json");
        std::fs::write(&json_path, r#"[{"id":"s1","team":"north","latitude":52.1,"longitude":4.3,"window_start":"08:00","window_end":"09:00"},{"id":"s2","team":"north","latitude":52.2,"longitude":4.4}]"#).unwrap();
        assert_eq!(
            read_stops(&csv_path).unwrap(),
            read_stops(&json_path).unwrap()
        );
    }

    #[test]
    fn out_of_range_coordinates_are_an_input_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stops.json");
        std::fs::write(
            &path,
            r#"[{"id":"s1","team":"n","latitude":95,"longitude":4}]"#,
        )
        .unwrap();
        assert!(matches!(read_stops(&path), Err(InputError::Parse { .. })));
    }
}
