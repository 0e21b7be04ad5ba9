pub(crate) mod props;
pub(crate) mod reference;
mod unit;
