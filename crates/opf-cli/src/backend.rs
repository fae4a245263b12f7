//! The one place that maps the compiled-in backend feature and `--device` to a burn [`Device`].

use anyhow::{Result, bail};
use burn::tensor::Device;

/// Backends compiled into this binary.
pub fn compiled() -> Vec<&'static str> {
    let mut v = Vec::new();
    if cfg!(feature = "cpu") {
        v.push("cpu");
    }
    if cfg!(feature = "wgpu") {
        v.push("wgpu");
    }
    if cfg!(feature = "cuda") {
        v.push("cuda");
    }
    if cfg!(feature = "tch") {
        v.push("tch");
    }
    v
}

fn not_compiled(spec: &str, feature: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "device {spec:?} needs the `{feature}` backend, which this binary was built without \
         (compiled: {}); rebuild with `cargo xtask glue <TASK> --backend {feature}` or \
         `cargo run -p opf-cli --features {feature}`",
        compiled().join(", ")
    )
}

/// Whether `device` (from [`device`]) is the host CPU, burn-flex or LibTorch's CPU device, rather
/// than an accelerator.
pub fn is_host(device: &Device) -> bool {
    #[cfg(feature = "cpu")]
    if *device == Device::flex() {
        return true;
    }
    #[cfg(feature = "tch")]
    #[allow(deprecated)]
    if *device == Device::libtorch() {
        return true;
    }
    let _ = device;
    false
}

/// Parses `cpu`, `cuda[:N]`, `wgpu`, `tch` / `tch-cpu`, `tch-cuda[:N]` into a device of a compiled-in
/// backend.
pub fn device(spec: &str) -> Result<Device> {
    let (kind, index) = match spec.split_once(':') {
        Some((k, i)) => (
            k,
            i.parse::<usize>()
                .map_err(|_| anyhow::anyhow!("bad device index in {spec:?}"))?,
        ),
        None => (spec, 0),
    };
    let _ = index;
    match kind {
        "cpu" => {
            #[cfg(feature = "cpu")]
            return Ok(Device::flex());
            #[cfg(not(feature = "cpu"))]
            return Err(not_compiled(spec, "cpu"));
        }
        "cuda" => {
            #[cfg(feature = "cuda")]
            return Ok(Device::cuda(index));
            #[cfg(not(feature = "cuda"))]
            return Err(not_compiled(spec, "cuda"));
        }
        "wgpu" => {
            #[cfg(feature = "wgpu")]
            return Ok(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice));
            #[cfg(not(feature = "wgpu"))]
            return Err(not_compiled(spec, "wgpu"));
        }
        "tch" | "tch-cpu" => {
            // burn-tch is deprecated in burn 0.22 (gone in 0.23); it stays as the LibTorch option.
            #[cfg(feature = "tch")]
            #[allow(deprecated)]
            return Ok(Device::libtorch());
            #[cfg(not(feature = "tch"))]
            return Err(not_compiled(spec, "tch"));
        }
        "tch-cuda" => {
            #[cfg(feature = "tch")]
            #[allow(deprecated)]
            return Ok(Device::libtorch_cuda(index));
            #[cfg(not(feature = "tch"))]
            return Err(not_compiled(spec, "tch"));
        }
        _ => bail!("unknown device {spec:?}: expected cpu, cuda[:N], wgpu, tch or tch-cuda[:N]"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        assert!(device("cpu").is_ok());
        for spec in ["cpu", "cpu:0"] {
            assert!(is_host(&device(spec).unwrap()), "{spec}");
        }
        #[cfg(feature = "tch")]
        {
            assert!(is_host(&device("tch").unwrap()) && is_host(&device("tch-cpu:0").unwrap()));
            assert!(!is_host(&device("tch-cuda").unwrap()));
        }
        let err = device("tpu").unwrap_err().to_string();
        assert!(err.contains("unknown device"), "{err}");
        assert!(device("cuda:x").is_err());
        if !cfg!(feature = "cuda") {
            let err = device("cuda:0").unwrap_err().to_string();
            assert!(err.contains("--backend cuda"), "{err}");
        }
    }
}
