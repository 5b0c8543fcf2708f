//! Duplex service runtime (being written).
