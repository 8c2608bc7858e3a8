//! Exact decimal rendering of wei amounts (no floating point anywhere).

use alloy_primitives::U256;

/// Wei per ether (10^18).
pub const WEI_PER_ETH_DECIMALS: u8 = 18;
/// Wei per gwei (10^9).
pub const WEI_PER_GWEI_DECIMALS: u8 = 9;

/// Renders `amount` (an integer number of base units) as an exact decimal number of units
/// of `10^decimals` base units, without trailing zeros: `format_units(1_500_000_000_000_000_000, 18)`
/// is `"1.5"`, `format_units(1, 18)` is `"0.000000000000000001"`, zero is `"0"`.
pub fn format_units(amount: U256, decimals: u8) -> String {
    let digits = amount.to_string();
    let decimals = usize::from(decimals);
    if decimals == 0 {
        return digits;
    }
    let padded = if digits.len() <= decimals {
        format!("{}{digits}", "0".repeat(decimals + 1 - digits.len()))
    } else {
        digits
    };
    let (whole, fraction) = padded.split_at(padded.len() - decimals);
    let fraction = fraction.trim_end_matches('0');
    if fraction.is_empty() {
        whole.to_owned()
    } else {
        format!("{whole}.{fraction}")
    }
}

/// Renders wei as ether, exactly (see [`format_units`]).
pub fn format_eth(wei: U256) -> String {
    format_units(wei, WEI_PER_ETH_DECIMALS)
}

/// Renders wei as gwei, exactly (see [`format_units`]).
pub fn format_gwei(wei: u128) -> String {
    format_units(U256::from(wei), WEI_PER_GWEI_DECIMALS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_exact_decimals() {
        let eth = |s: &str| format_eth(s.parse().expect("decimal"));
        assert_eq!(eth("0"), "0");
        assert_eq!(eth("1"), "0.000000000000000001");
        assert_eq!(eth("1000000000000000000"), "1");
        assert_eq!(eth("1500000000000000000"), "1.5");
        assert_eq!(
            eth("123456789012345678901234567"),
            "123456789.012345678901234567"
        );
        assert_eq!(format_gwei(30_000_000_000), "30");
        assert_eq!(format_gwei(1_500_000_001), "1.500000001");
        assert_eq!(format_units(U256::from(42u8), 0), "42");
        // The largest value renders without loss.
        assert_eq!(
            format_eth(U256::MAX),
            "115792089237316195423570985008687907853269984665640564039457.584007913129639935"
        );
    }
}
