//! Where a stage runs.
//!
//! The API is the same in every build. A backend that was not compiled in is
//! a clear error naming the cargo feature, never a silent CPU fallback; only
//! `auto` falls back, because that is what the user asked for.

use crate::ModelError;
use std::fmt;
use std::str::FromStr;

/// A compute device for a pipeline stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    /// All CPU cores.
    Cpu,
    /// NVIDIA GPU by ordinal (feature `cuda`).
    Cuda(usize),
    /// Apple GPU by ordinal (feature `metal`).
    Metal(usize),
    /// Apple Neural Engine through Core ML (not available in this build's engines).
    CoreMl,
    /// The best compiled-in backend that is present on this machine, else the CPU.
    Auto,
}

impl FromStr for Device {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim().to_ascii_lowercase();
        let (name, ordinal) = match s.split_once(':') {
            Some((n, o)) => {
                let o = o.parse::<usize>().map_err(|_| {
                    ModelError::BadDevice(format!("`{s}`: `{o}` is not a device number"))
                })?;
                (n.to_string(), o)
            }
            None => (s.clone(), 0),
        };
        match name.as_str() {
            "cpu" => Ok(Device::Cpu),
            "cuda" | "gpu" | "nvidia" => Ok(Device::Cuda(ordinal)),
            "metal" | "mps" => Ok(Device::Metal(ordinal)),
            "coreml" | "ane" => Ok(Device::CoreMl),
            "auto" => Ok(Device::Auto),
            _ => Err(ModelError::BadDevice(format!(
                "`{s}` (expected cpu, cuda[:N], metal[:N], coreml or auto)"
            ))),
        }
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::Cuda(i) => write!(f, "cuda:{i}"),
            Device::Metal(i) => write!(f, "metal:{i}"),
            Device::CoreMl => f.write_str("coreml"),
            Device::Auto => f.write_str("auto"),
        }
    }
}

/// The backends this binary was built with: devices, and the embedding
/// runtimes (`onnxruntime`, `candle`).
pub fn compiled_backends() -> Vec<&'static str> {
    let mut v = vec!["cpu"];
    if cfg!(feature = "ort") {
        v.push("onnxruntime");
    }
    if cfg!(feature = "candle") {
        v.push("candle");
    }
    if cfg!(feature = "coreml") {
        v.push("coreml");
    }
    if cfg!(feature = "cuda") {
        v.push("cuda");
    }
    if cfg!(feature = "metal") {
        v.push("metal");
    }
    v
}

#[cfg(feature = "candle")]
impl Device {
    /// Turn the choice into a candle device, or say why it cannot be had.
    pub fn to_candle(self) -> Result<candle_core::Device, ModelError> {
        match self {
            Device::Cpu => Ok(candle_core::Device::Cpu),
            Device::Cuda(i) => {
                if !cfg!(feature = "cuda") {
                    return Err(ModelError::NotCompiled {
                        backend: "CUDA",
                        feature: "cuda",
                    });
                }
                candle_core::Device::new_cuda(i)
                    .map_err(|e| ModelError::DeviceUnavailable(format!("cuda:{i}: {e}")))
            }
            Device::Metal(i) => {
                if !cfg!(feature = "metal") {
                    return Err(ModelError::NotCompiled {
                        backend: "Metal",
                        feature: "metal",
                    });
                }
                candle_core::Device::new_metal(i)
                    .map_err(|e| ModelError::DeviceUnavailable(format!("metal:{i}: {e}")))
            }
            Device::CoreMl => Err(ModelError::NotCompiled {
                backend: "Core ML (Apple Neural Engine)",
                feature: "coreml",
            }),
            Device::Auto => {
                if cfg!(feature = "cuda") {
                    if let Ok(d) = candle_core::Device::new_cuda(0) {
                        return Ok(d);
                    }
                }
                if cfg!(feature = "metal") {
                    if let Ok(d) = candle_core::Device::new_metal(0) {
                        return Ok(d);
                    }
                }
                Ok(candle_core::Device::Cpu)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_device_names() {
        assert_eq!("cpu".parse::<Device>().unwrap(), Device::Cpu);
        assert_eq!("CUDA:1".parse::<Device>().unwrap(), Device::Cuda(1));
        assert_eq!("metal".parse::<Device>().unwrap(), Device::Metal(0));
        assert_eq!("auto".parse::<Device>().unwrap(), Device::Auto);
        assert!("tpu"
            .parse::<Device>()
            .unwrap_err()
            .to_string()
            .contains("tpu"));
        assert!("cuda:x".parse::<Device>().is_err());
    }

    #[cfg(feature = "candle")]
    #[test]
    fn missing_backend_is_a_clear_error() {
        assert!(matches!(
            Device::Cpu.to_candle(),
            Ok(candle_core::Device::Cpu)
        ));
        assert!(Device::Auto.to_candle().is_ok());
        if !cfg!(feature = "cuda") {
            let e = Device::Cuda(0).to_candle().unwrap_err().to_string();
            assert!(
                e.contains("not compiled with CUDA") && e.contains("--features cuda"),
                "{e}"
            );
        }
        if !cfg!(feature = "metal") {
            let e = Device::Metal(0).to_candle().unwrap_err().to_string();
            assert!(e.contains("Metal"), "{e}");
        }
    }
}
