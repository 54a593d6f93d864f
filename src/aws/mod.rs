//! AWS adapters: DynamoDB store and KMS cipher.

pub mod schema;
