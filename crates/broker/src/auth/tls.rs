//! TLS on a client listener: the listener's server configuration (reloaded when its files
//! change) and the principal a client certificate maps to.

use std::sync::Arc;
use std::time::Duration;

use runnel_security::principal::MappingRules;
use runnel_security::tls::{self, ReloadingServerConfig, TlsSettings};
use rustls::pki_types::CertificateDer;
use tokio_rustls::TlsAcceptor;

use crate::config::Listener;
use crate::context::KafkaPrincipal;

/// The TLS side of one SSL or SASL_SSL listener.
pub struct ListenerTls {
    listener: String,
    config: ReloadingServerConfig,
    rules: MappingRules,
}

impl ListenerTls {
    /// Loads the listener's key store and trust store; an error names what is wrong.
    pub fn new(listener: &Listener) -> Result<ListenerTls, String> {
        let get = |k: &str| listener.security.get(k).cloned();
        let settings = TlsSettings::from_props(&get)
            .map_err(|e| format!("listener {}: {e}", listener.name))?;
        if settings.keystore.is_none() {
            return Err(format!(
                "listener {} uses {} but has no key store: set ssl.keystore.location (or ssl.keystore.key and ssl.keystore.certificate.chain), or listener.name.{}.ssl.keystore.location",
                listener.name,
                listener.protocol,
                listener.name.to_ascii_lowercase()
            ));
        }
        let rules = MappingRules::parse(
            get("ssl.principal.mapping.rules")
                .as_deref()
                .unwrap_or("DEFAULT"),
        )
        .map_err(|e| {
            format!(
                "listener {}: ssl.principal.mapping.rules: {e}",
                listener.name
            )
        })?;
        let config = ReloadingServerConfig::new(settings)
            .map_err(|e| format!("listener {}: {e}", listener.name))?;
        Ok(ListenerTls {
            listener: listener.name.clone(),
            config,
            rules,
        })
    }

    /// An acceptor with the configuration in force now (a reload affects new connections).
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.config.current())
    }

    /// The principal of a TLS client: its certificate's subject (RFC 2253, as Kafka) mapped by
    /// `ssl.principal.mapping.rules`, or `User:ANONYMOUS` without a certificate. An error
    /// (no rule matches) refuses the connection, as Kafka does.
    pub fn principal(
        &self,
        peer_certs: Option<&[CertificateDer<'_>]>,
    ) -> Result<KafkaPrincipal, String> {
        let Some(cert) = peer_certs.and_then(|c| c.first()) else {
            return Ok(KafkaPrincipal::anonymous());
        };
        let dn = tls::subject_dn(cert.as_ref())
            .ok_or_else(|| "the client certificate's subject cannot be read".to_string())?;
        self.rules.apply(&dn).map(KafkaPrincipal::user)
    }

    /// Reloads the key and trust stores if their files changed; a broken new file keeps the
    /// configuration in force and is logged.
    pub fn reload(&self) {
        match self.config.reload_if_changed() {
            Ok(true) => {
                tracing::info!(listener = %self.listener, "TLS key or trust store reloaded")
            }
            Ok(false) => {}
            Err(error) => tracing::error!(
                listener = %self.listener,
                %error,
                "TLS key or trust store changed but cannot be loaded; keeping the previous one"
            ),
        }
    }
}

/// Checks every TLS listener's files every `interval` until `stop` fires.
pub async fn run_reloader(
    listeners: Vec<Arc<ListenerTls>>,
    interval: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    if listeners.is_empty() {
        return;
    }
    let mut tick = tokio::time::interval(interval);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tick.tick() => {
                let l = listeners.clone();
                let _ = tokio::task::spawn_blocking(move || l.iter().for_each(|t| t.reload())).await;
            }
        }
    }
}
