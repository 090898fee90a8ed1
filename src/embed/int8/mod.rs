//! kefu's int8 BERT encoder: the whole forward pass over plain buffers, with the linear layers
//! as int8 products (AVX-512 VNNI where the CPU has it) and the rest in f32.

pub mod bert;
pub mod gemm;

pub use bert::Int8Bert;
