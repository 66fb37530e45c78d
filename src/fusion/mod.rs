//! Optimal-transport fusion of transformers (Imfeld et al., ICLR 2024): OT solvers, transport
//! maps, the layer-by-layer fusion of ViTs, BERT encoders and decoders, and the experiment
//! around it. See docs/fusion.md.

pub mod activations;
pub mod bert_fusion;
pub mod decoder_fusion;
pub mod decoder_weights;
pub mod emd;
pub mod encoder_block;
pub mod encoder_family;
pub mod encoder_weights;
pub mod family;
pub mod lab;
pub mod options;
pub mod ot;
pub mod params;
pub mod tasks;
pub mod transport;
pub mod vit_fusion;
pub mod vit_weights;
pub mod walk;
