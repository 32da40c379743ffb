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
        Err(kubeconfig) if context.is_none() => match kube::Config::incluster() {
            Ok(c) => c,
            Err(_) => {
                return Err(ApiError::unreachable(
                    format!(
                        "no usable kubeconfig ({kubeconfig}); set KUBECONFIG or create ~/.kube/config"
                    ),
                    kubeconfig,
                ));
            }
        },
        Err(e) => {
            return Err(ApiError::unreachable(
                format!("cannot load the kubeconfig context: {e}"),
                e,
            ));
        }
    };
    let server = config.cluster_url.to_string();
    let client = kube::Client::try_from(config).map_err(|e| {
        ApiError::unreachable(format!("cannot set up a client for {server}: {e}"), e)
    })?;
    client.apiserver_version().await.map_err(|e| {
        ApiError::unreachable(
            format!(
                "the Kubernetes API at {server} does not answer ({e}); check that the cluster is up and that KUBECONFIG (or --context) points at it"
            ),
            e,
        )
    })?;
    Ok(client)
}
