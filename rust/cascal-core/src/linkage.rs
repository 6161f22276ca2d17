//! linkage kernels (to be written).
