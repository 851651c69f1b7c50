//! The container image, checked without a container engine (none runs on the development
//! machine): the Containerfile builds the binary the way the docs say (the `dist` profile that
//! Cargo.toml declares), the command lines in its header and in deploy/README.md agree, and the
//! runtime stage's paths and ports are the ones the config and the Kubernetes manifests use.

use std::path::Path;

fn read(relative: &str) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(root.join(relative)).unwrap()
}

#[test]
fn the_containerfile_builds_and_runs_what_the_docs_and_config_say() {
    let containerfile = read("deploy/Containerfile");
    let cargo = read("Cargo.toml");
    let readme = read("deploy/README.md");
    let k8s_config = read("deploy/kubernetes/gatehouse.toml");
    let k8s_deployment = read("deploy/kubernetes/deployment.yaml");

    // Build stage: the profile exists, and the binary is taken from its folder.
    assert!(containerfile.contains("cargo build --profile dist --locked --bin gatehouse"));
    assert!(containerfile.contains("target/dist/gatehouse /out/gatehouse"));
    assert!(
        cargo.contains("[profile.dist]"),
        "Cargo.toml declares the dist profile"
    );
    // The build command of the header is the one the deploy README gives.
    assert!(containerfile.contains("docker build -f deploy/Containerfile"));
    assert!(readme.contains("docker build -f deploy/Containerfile"));
    assert!(readme.contains(
        "podman build -f deploy/Containerfile --ignorefile deploy/Containerfile.dockerignore"
    ));

    // Run stage: the config path, the state folder and the ports.
    assert!(
        containerfile.contains(r#"CMD ["serve", "--config", "/etc/gatehouse/gatehouse.toml"]"#)
    );
    assert!(k8s_deployment.contains("mountPath: /etc/gatehouse/gatehouse.toml"));
    assert!(readme.contains("/etc/gatehouse:ro"));
    assert!(containerfile.contains("/var/lib/gatehouse"));
    assert!(readme.contains("gatehouse-data:/var/lib/gatehouse"));
    let exposed = containerfile
        .lines()
        .find_map(|l| l.strip_prefix("EXPOSE "))
        .unwrap();
    assert_eq!(exposed.trim(), "8443 9090");
    assert!(k8s_config.contains(r#"listen = "0.0.0.0:8443""#));
    assert!(k8s_config.contains(r#"listen = "0.0.0.0:9090""#));
    // The defaults the ports come from.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gatehouse.toml");
    std::fs::write(
        &path,
        "[server]\npublic_url = \"https://gw.example\"\n[server.tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\n[oauth]\nsigning_keys = [\"s.pem\"]\n",
    )
    .unwrap();
    let config = gatehouse::config::Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.server.listen.port(), 8443);
    assert_eq!(config.admin.listen.port(), 9090);
    assert_eq!(
        config.store.url.expose(),
        "sqlite:///var/lib/gatehouse/gatehouse.db"
    );
}
