//! Prints the README's table of the flow record's information elements (generated from the
//! declaration in `ipfix/src/flow.rs`): `cargo run -p ipfix --example elements_table`.

fn main() {
    print!("{}", ipfix::elements_table(ipfix::DOCUMENTATION_PEN));
}
