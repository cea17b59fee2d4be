//! One write of the recorder: what the request path added up since the last (usage, presented
//! certificates, key use, networks, refusal counts) and the audit events queued, in one
//! transaction, with audit rows kept out of the last tenth of a capped database.

use std::collections::{BTreeMap, HashMap};

use super::evidence::{instance_names, leaf_not_before};
use super::{
    AUDIT_CHUNK, AuditEvent, Presented, RefusalTotalsByKey, RefusedByClient, UsageTotalsByKey,
    chain_text,
};
use crate::identity::{AuthMethod, Fingerprint};
use crate::storage::{Backend, Db, Tx, on_backend};
use crate::telemetry::Metrics;

/// What one write takes.
#[derive(Default)]
pub(super) struct Batch {
    pub(super) usage: UsageTotalsByKey,
    /// The hour in which each (client, certificate) row of `presented_certificates` was last
    /// written with its chain, kept across writes: a chain is a few KiB, written once an hour
    /// per certificate, not on every tick (which only moves `last_seen`).
    pub(super) chains_written: HashMap<(String, Fingerprint), i64>,
    pub(super) refusals: RefusalTotalsByKey,
    pub(super) refused_certificates: RefusedByClient,
    pub(super) audit: Vec<AuditEvent>,
    /// Pages the database may have before audit rows stop being written (see
    /// [`super::AUDIT_SHARE_OF_CAP`]).
    pub(super) audit_page_limit: Option<i64>,
}

impl Batch {
    pub(super) fn len(&self) -> usize {
        self.usage.len() + self.refusals.len() + self.refused_certificates.len() + self.audit.len()
    }

    /// Every certificate presented in this batch, by client, with the hour it was last seen
    /// in: those of authenticated requests, and those refused but named by a client's bindings.
    fn presented(&self) -> Vec<(&String, i64, &Presented)> {
        let used = self
            .usage
            .iter()
            .filter(|((_, method, _), _)| *method == AuthMethod::Certificate)
            .flat_map(|((client, _, hour), totals)| {
                totals.presented.iter().map(move |p| (client, *hour, p))
            });
        let refused = self.refused_certificates.iter().flat_map(|(client, list)| {
            list.iter()
                .map(move |p| (client, p.last_seen - p.last_seen.rem_euclid(3600), p))
        });
        used.chain(refused).collect()
    }

    pub(super) async fn write(&mut self, pool: &Db, metrics: &Metrics) {
        if self.len() == 0 {
            return;
        }
        for ((client, _, _), totals) in &self.usage {
            if let Some(seen) = &totals.certificate {
                metrics.record_client_certificate(client, seen.not_after);
            }
        }
        for (client, _, presented) in self.presented() {
            if metrics.is_newest_certificate(client, presented.not_after)
                && let Some(not_before) = leaf_not_before(&presented.chain)
            {
                metrics.record_newest_certificate(client, not_before, presented.not_after);
            }
        }
        let records = self.len() as u64;
        let written = self.try_write(pool).await;
        if written.is_ok() {
            self.note_chains_written();
        }
        match written {
            Ok(0) => {}
            Ok(held_back) => {
                metrics.recorder_dropped.inc_by(held_back as u64);
                tracing::error!(
                    dropped = held_back,
                    "the database is near database.max_size_bytes: audit rows and refusal counts \
                     are not written, the rest is kept for plans (prune the audit log or raise \
                     the cap)"
                );
            }
            Err(error) => {
                crate::storage::file_faults::note(&error);
                // Usage and audit records are best effort by design; a lost batch is counted.
                metrics.recorder_dropped.inc_by(records);
                tracing::error!(error = %error, records, "writing usage and audit records failed; they were dropped");
            }
        }
        self.usage.clear();
        self.refusals.clear();
        self.refused_certificates.clear();
        self.audit.clear();
    }

    /// Remembers the chains this batch wrote, and forgets those of past hours.
    fn note_chains_written(&mut self) {
        let written: Vec<((String, Fingerprint), i64)> = self
            .presented()
            .into_iter()
            .map(|(client, hour, presented)| ((client.clone(), presented.fingerprint), hour))
            .collect();
        self.chains_written.extend(written);
        if let Some(newest) = self.chains_written.values().copied().max() {
            self.chains_written.retain(|_, hour| *hour >= newest);
        }
    }

    /// Whether this writer wrote the row of this client and certificate, chain included, in
    /// the same hour: then only its `last_seen` moves.
    fn chain_written(&self, client: &str, hour: i64, presented: &Presented) -> bool {
        self.chains_written
            .get(&(client.to_owned(), presented.fingerprint))
            == Some(&hour)
    }

    /// Writes the batch in one transaction; returns how many refusal counts and audit rows were
    /// held back by the size cap. The tables in this order, and each one's rows in key order:
    /// replicas writing the same rows then lock them in the same order, never in a cycle
    /// (PostgreSQL would abort one batch as a deadlock).
    async fn try_write(&self, pool: &Db) -> Result<usize, sqlx::Error> {
        let mut tx = pool.begin().await?;
        self.write_usage(&mut tx).await?;
        self.write_presented(&mut tx).await?;
        self.write_key_use(&mut tx).await?;
        self.write_networks(&mut tx).await?;
        let held_back = self.write_refusals_and_audit(&mut tx).await?;
        tx.commit().await?;
        Ok(held_back)
    }

    /// Each client's use of each method per hour, added to what is stored.
    async fn write_usage(&self, tx: &mut Tx) -> Result<(), sqlx::Error> {
        // In key order.
        let mut usage: Vec<_> = self.usage.iter().collect();
        usage.sort_by(|(a, _), (b, _)| (&a.0, a.1.as_str(), a.2).cmp(&(&b.0, b.1.as_str(), b.2)));
        for ((client, method, hour), totals) in usage {
            on_backend!(&mut *tx, tx => sqlx::query(
                "INSERT INTO client_usage (client, method, hour, request_count, first_seen, last_seen, \
                 last_cert_fingerprint, last_cert_not_after, last_cert_issuer_spki) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                 ON CONFLICT (client, method, hour) DO UPDATE SET \
                 request_count = client_usage.request_count + excluded.request_count, \
                 first_seen = CASE WHEN excluded.first_seen < client_usage.first_seen \
                   THEN excluded.first_seen ELSE client_usage.first_seen END, \
                 last_seen = CASE WHEN excluded.last_seen > client_usage.last_seen \
                   THEN excluded.last_seen ELSE client_usage.last_seen END, \
                 last_cert_fingerprint = coalesce(excluded.last_cert_fingerprint, client_usage.last_cert_fingerprint), \
                 last_cert_not_after = coalesce(excluded.last_cert_not_after, client_usage.last_cert_not_after), \
                 last_cert_issuer_spki = coalesce(excluded.last_cert_issuer_spki, client_usage.last_cert_issuer_spki)",
            )
            .bind(client)
            .bind(method.as_str())
            .bind(hour)
            .bind(totals.count)
            .bind(totals.first_seen)
            .bind(totals.last_seen)
            .bind(totals.certificate.as_ref().map(|c| c.fingerprint.to_string()))
            .bind(totals.certificate.as_ref().map(|c| c.not_after))
            .bind(totals.certificate.as_ref().map(|c| c.issuer_spki.to_string()))
            .execute(&mut **tx)
            .await
            .map(|_| ()))?;
        }
        Ok(())
    }

    /// The certificates each client presented: the time seen, and once an hour the chain.
    async fn write_presented(&self, tx: &mut Tx) -> Result<(), sqlx::Error> {
        // In (client, fingerprint) order.
        let mut presented = self.presented();
        presented.sort_by(|a, b| (a.0, a.2.fingerprint).cmp(&(b.0, b.2.fingerprint)));
        for (client, hour, certificate) in presented {
            let fingerprint = certificate.fingerprint.to_string();
            // A row written this hour gets its new last_seen alone; one that is not there (new,
            // or pruned since by any replica) is written whole, chain included.
            if self.chain_written(client, hour, certificate) {
                let updated = on_backend!(&mut *tx, tx => sqlx::query(
                    "UPDATE presented_certificates SET \
                     network = CASE WHEN $3 >= last_seen THEN $4 ELSE network END, \
                     last_seen = CASE WHEN $3 > last_seen THEN $3 ELSE last_seen END \
                     WHERE client = $1 AND fingerprint = $2",
                )
                .bind(client)
                .bind(&fingerprint)
                .bind(certificate.last_seen)
                .bind(&certificate.network)
                .execute(&mut **tx)
                .await
                .map(|done| done.rows_affected()))?;
                if updated > 0 {
                    continue;
                }
            }
            on_backend!(&mut *tx, tx => sqlx::query(
                "INSERT INTO presented_certificates \
                 (client, fingerprint, chain, last_seen, not_after, network, names) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 ON CONFLICT (client, fingerprint) DO UPDATE SET \
                 chain = excluded.chain, not_after = excluded.not_after, names = excluded.names, \
                 network = CASE WHEN excluded.last_seen >= presented_certificates.last_seen \
                   THEN excluded.network ELSE presented_certificates.network END, \
                 last_seen = CASE WHEN excluded.last_seen > presented_certificates.last_seen \
                   THEN excluded.last_seen ELSE presented_certificates.last_seen END",
            )
            .bind(client)
            .bind(&fingerprint)
            .bind(chain_text(&certificate.chain))
            .bind(certificate.last_seen)
            .bind(certificate.not_after)
            .bind(&certificate.network)
            .bind(instance_names(&certificate.chain))
            .execute(&mut **tx)
            .await
            .map(|_| ()))?;
        }
        Ok(())
    }

    /// Each API key's use, added up over the batch.
    async fn write_key_use(&self, tx: &mut Tx) -> Result<(), sqlx::Error> {
        // Added up over the batch, in key order.
        let mut keys: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
        for totals in self.usage.values() {
            for (key, (count, last)) in &totals.keys {
                let entry = keys.entry(key.as_str()).or_insert((0, *last));
                entry.0 += count;
                entry.1 = entry.1.max(*last);
            }
        }
        for (key, (count, last)) in keys {
            on_backend!(&mut *tx, tx => sqlx::query(
                "UPDATE api_keys SET use_count = use_count + $1, \
                 last_used_at = CASE WHEN last_used_at IS NULL OR last_used_at < $2 \
                   THEN $2 ELSE last_used_at END \
                 WHERE key_sha256 = $3",
            )
            .bind(count)
            .bind(last)
            .bind(key)
            .execute(&mut **tx)
            .await
            .map(|_| ()))?;
        }
        Ok(())
    }

    /// Where each client used each method from.
    async fn write_networks(&self, tx: &mut Tx) -> Result<(), sqlx::Error> {
        // In key order.
        let mut networks: BTreeMap<(&str, &str, &str), i64> = BTreeMap::new();
        for ((client, method, _), totals) in &self.usage {
            for (network, last) in &totals.networks {
                let entry = networks
                    .entry((client.as_str(), method.as_str(), network.as_str()))
                    .or_insert(*last);
                *entry = (*entry).max(*last);
            }
        }
        for ((client, method, network), last) in networks {
            on_backend!(&mut *tx, tx => sqlx::query(
                "INSERT INTO credential_networks (client, method, network, last_seen) \
                 VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (client, method, network) DO UPDATE SET \
                 last_seen = CASE WHEN excluded.last_seen > credential_networks.last_seen \
                   THEN excluded.last_seen ELSE credential_networks.last_seen END",
            )
            .bind(client)
            .bind(method)
            .bind(network)
            .bind(last)
            .execute(&mut **tx)
            .await
            .map(|_| ()))?;
        }
        Ok(())
    }

    /// Refusal counts and audit rows, under the size cap: how many were held back for lack of room.
    async fn write_refusals_and_audit(&self, tx: &mut Tx) -> Result<usize, sqlx::Error> {
        // Under a size cap, refusal counts and audit rows are written in small chunks, each only
        // while the file's used pages are below their share of the cap: the overshoot is one
        // chunk, well inside the tenth kept for plans. Freed pages count as free.
        let mut written = 0;
        let mut refusals: Vec<_> = self.refusals.iter().collect();
        refusals.sort_by_key(|(key, _)| *key);
        let mut room = true;
        for chunk in refusals.chunks(AUDIT_CHUNK) {
            room = room && self.below_audit_limit(tx).await?;
            if !room {
                break;
            }
            for ((reason, source, hour), totals) in chunk {
                on_backend!(&mut *tx, tx => sqlx::query(
                    "INSERT INTO refusal_counts (hour, reason, source, count, first_seen, last_seen, last_detail) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7) \
                     ON CONFLICT (hour, reason, source) DO UPDATE SET \
                     count = refusal_counts.count + excluded.count, \
                     first_seen = CASE WHEN excluded.first_seen < refusal_counts.first_seen \
                       THEN excluded.first_seen ELSE refusal_counts.first_seen END, \
                     last_seen = CASE WHEN excluded.last_seen > refusal_counts.last_seen \
                       THEN excluded.last_seen ELSE refusal_counts.last_seen END, \
                     last_detail = excluded.last_detail",
                )
                .bind(hour)
                .bind(reason)
                .bind(source)
                .bind(totals.count)
                .bind(totals.first_seen)
                .bind(totals.last_seen)
                .bind(totals.last_detail.to_string())
                .execute(&mut **tx)
                .await
                .map(|_| ()))?;
            }
            written += chunk.len();
        }
        for chunk in self.audit.chunks(AUDIT_CHUNK) {
            room = room && self.below_audit_limit(tx).await?;
            if !room {
                break;
            }
            for event in chunk {
                event.insert(tx).await?;
            }
            written += chunk.len();
        }
        Ok(self.refusals.len() + self.audit.len() - written)
    }

    /// Whether the database's used pages are below the audit share of the size cap (always,
    /// without a cap).
    async fn below_audit_limit(&self, tx: &mut Tx) -> Result<bool, sqlx::Error> {
        let (Some(limit), Backend::Sqlite(tx)) = (self.audit_page_limit, tx) else {
            return Ok(true);
        };
        let used: i64 = sqlx::query_scalar(
            "SELECT page_count - freelist_count FROM pragma_page_count(), pragma_freelist_count()",
        )
        .fetch_one(&mut **tx)
        .await?;
        Ok(used < limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::recorder::UsageTotals;

    fn presented(fingerprint: &[u8]) -> Presented {
        Presented {
            fingerprint: Fingerprint::of_der(fingerprint),
            last_seen: 0,
            not_after: 0,
            chain: std::sync::Arc::from(vec![fingerprint.to_vec()]),
            network: "10.0.0.0/24".into(),
        }
    }

    #[test]
    fn a_chain_is_noted_as_written_once_an_hour_per_client_and_certificate() {
        let totals = |certificates: &[&[u8]]| UsageTotals {
            count: 1,
            presented: certificates.iter().map(|c| presented(c)).collect(),
            ..UsageTotals::default()
        };
        let mut batch = Batch::default();
        let key = |client: &str, method, hour| (client.to_owned(), method, hour);
        batch.usage.insert(
            key("w", AuthMethod::Certificate, 3600),
            totals(&[b"a", b"b"]),
        );
        // A key-authenticated row carries no certificate to keep.
        batch
            .usage
            .insert(key("k", AuthMethod::ApiKey, 3600), totals(&[b"k"]));
        assert!(!batch.chain_written("w", 3600, &presented(b"a")));
        batch.note_chains_written();
        assert_eq!(batch.chains_written.len(), 2, "both of w's, none of k's");
        assert!(batch.chain_written("w", 3600, &presented(b"a")));
        assert!(batch.chain_written("w", 3600, &presented(b"b")));
        // Another certificate, another client's, or the same one in the next hour: not yet.
        assert!(!batch.chain_written("w", 3600, &presented(b"c")));
        assert!(!batch.chain_written("x", 3600, &presented(b"a")));
        assert!(!batch.chain_written("w", 7200, &presented(b"a")));
        // Chains of past hours are forgotten once a newer hour is written.
        batch.usage.clear();
        batch
            .usage
            .insert(key("w", AuthMethod::Certificate, 7200), totals(&[b"a"]));
        batch.note_chains_written();
        assert_eq!(batch.chains_written.len(), 1);
        assert!(!batch.chain_written("w", 3600, &presented(b"b")));
        assert!(batch.chain_written("w", 7200, &presented(b"a")));
    }
}
