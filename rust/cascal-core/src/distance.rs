//! distance kernels (to be written).
