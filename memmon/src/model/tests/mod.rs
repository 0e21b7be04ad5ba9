mod props;
mod reference;
mod unit;
