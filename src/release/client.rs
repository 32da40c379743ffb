//! The cluster connection: the kubeconfig from the default loading rules
//! (`KUBECONFIG`, else `~/.kube/config`, else in-cluster), with an optional
//! context.

use super::apply::ApiError;

/// Connects and checks that the API server answers, so that a cluster that
/// is down is reported before anything is recorded.
pub async fn connect(context: Option<&str>) -> Result<kube::Client, ApiError> {
    let options = kube::config::KubeConfigOptions {
        context: context.map(str::to_string),
        ..Default::default()
    };
    let config = match kube::Config::from_kubeconfig(&options).await {
        Ok(c) => c,
        Err(kubeconfig) if context.is_none() => kube::Config::incluster().map_err(|_| {
            ApiError::Unreachable(format!(
                "no usable kubeconfig ({kubeconfig}); set KUBECONFIG or create ~/.kube/config"
            ))
        })?,
        Err(e) => {
            return Err(ApiError::Unreachable(format!(
                "cannot load the kubeconfig context: {e}"
            )));
        }
    };
    let server = config.cluster_url.to_string();
    let client = kube::Client::try_from(config)
        .map_err(|e| ApiError::Unreachable(format!("cannot set up a client for {server}: {e}")))?;
    client.apiserver_version().await.map_err(|e| {
        ApiError::Unreachable(format!(
            "the Kubernetes API at {server} does not answer ({e}); check that the cluster is up and that KUBECONFIG (or --context) points at it"
        ))
    })?;
    Ok(client)
}
