//! The collecting side, as far as tests and tools need it: a [`Decoder`] that learns
//! templates per observation domain and splits data sets into records, and
//! [`stream_message_len`] to cut a TCP stream into messages.

use crate::flow::FlowRecord;
use crate::ie::FieldError;
use crate::wire::{
    DataRecords, FieldSpec, Message, MessageRepr, SetRepr, TemplateRecord, WireError, MESSAGE_HEADER_LEN,
};
use std::collections::HashMap;
use thiserror::Error;

/// Why a message did not decode.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// Not a well-formed message.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// A data set of a template the decoder has not seen.
    #[error("data set of unknown template {template} (domain {domain})")]
    UnknownTemplate {
        /// Observation domain.
        domain: u32,
        /// Template ID.
        template: u16,
    },
    /// A field that its element's type does not allow.
    #[error(transparent)]
    Field(#[from] FieldError),
}

/// The fields of one data record, in template order, with their bytes.
pub type RecordFields = Vec<(FieldSpec, Vec<u8>)>;

/// One message, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// Export time.
    pub export_time: u32,
    /// Sequence number.
    pub sequence_number: u32,
    /// Observation Domain ID.
    pub observation_domain_id: u32,
    /// Template records it carried (withdrawals included).
    pub templates: usize,
    /// Its data records: template ID and the fields with their bytes.
    pub records: Vec<(u16, RecordFields)>,
}

/// Decodes messages, keeping the templates it has seen per (domain, template ID).
#[derive(Debug, Default)]
pub struct Decoder {
    templates: HashMap<(u32, u16), TemplateRecord>,
}

impl Decoder {
    /// A decoder that knows no template.
    pub fn new() -> Decoder {
        Decoder::default()
    }

    /// The template `id` of `domain`, when seen.
    pub fn template(&self, domain: u32, id: u16) -> Option<&TemplateRecord> {
        self.templates.get(&(domain, id))
    }

    /// Decodes one message: learns its templates (a withdrawal forgets one), splits its data
    /// sets with the templates known so far.
    pub fn message(&mut self, bytes: &[u8]) -> Result<Decoded, DecodeError> {
        let m = Message::new_checked(bytes)?;
        let repr = MessageRepr::parse(&m)?;
        let domain = repr.observation_domain_id;
        let mut out = Decoded {
            export_time: repr.export_time,
            sequence_number: repr.sequence_number,
            observation_domain_id: domain,
            templates: 0,
            records: Vec::new(),
        };
        for set in repr.sets {
            match set {
                SetRepr::Template(ts) => {
                    for t in ts {
                        out.templates += 1;
                        if t.fields.is_empty() {
                            self.templates.remove(&(domain, t.id));
                        } else {
                            self.templates.insert((domain, t.id), t);
                        }
                    }
                }
                SetRepr::OptionsTemplate(_) => {}
                SetRepr::Data { template_id, records } => {
                    let t = self
                        .templates
                        .get(&(domain, template_id))
                        .ok_or(DecodeError::UnknownTemplate { domain, template: template_id })?;
                    for r in DataRecords::new(t, &records) {
                        let r = r?;
                        out.records.push((template_id, r.into_iter().map(|(s, b)| (s, b.to_vec())).collect()));
                    }
                }
            }
        }
        Ok(out)
    }

    /// Decodes one message into the vRouter's flow records (enterprise elements of `pen`).
    pub fn flow_records(&mut self, bytes: &[u8], pen: u32) -> Result<Vec<FlowRecord>, DecodeError> {
        let d = self.message(bytes)?;
        d.records
            .iter()
            .map(|(tid, fields)| {
                FlowRecord::from_fields(*tid, fields.iter().map(|(s, b)| (*s, &b[..])), pen).map_err(DecodeError::from)
            })
            .collect()
    }
}

/// The length of the message at the start of a TCP stream's bytes, once they hold all of it.
pub fn stream_message_len(buf: &[u8]) -> Option<usize> {
    if buf.len() < MESSAGE_HEADER_LEN {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
    (len >= MESSAGE_HEADER_LEN && buf.len() >= len).then_some(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_before_its_template_is_an_error_and_a_withdrawal_forgets() {
        let mut d = Decoder::new();
        let data = MessageRepr {
            export_time: 0,
            sequence_number: 0,
            observation_domain_id: 3,
            sets: vec![SetRepr::Data { template_id: 300, records: vec![1, 2, 3, 4] }],
        };
        let mut bytes = Vec::new();
        data.emit(&mut bytes);
        assert_eq!(d.message(&bytes), Err(DecodeError::UnknownTemplate { domain: 3, template: 300 }));
        let t = TemplateRecord { id: 300, fields: vec![FieldSpec { id: 8, length: 4, enterprise: None }] };
        let mut tm = Vec::new();
        MessageRepr { sets: vec![SetRepr::Template(vec![t])], ..data.clone() }.emit(&mut tm);
        assert_eq!(d.message(&tm).unwrap().templates, 1);
        let got = d.message(&bytes).unwrap();
        assert_eq!(
            got.records,
            vec![(300, vec![(FieldSpec { id: 8, length: 4, enterprise: None }, vec![1, 2, 3, 4])])]
        );
        // Templates are per domain.
        let mut other = Vec::new();
        MessageRepr { observation_domain_id: 4, ..data.clone() }.emit(&mut other);
        assert!(d.message(&other).is_err());
        // Withdrawal.
        let mut w = Vec::new();
        MessageRepr { sets: vec![SetRepr::Template(vec![TemplateRecord { id: 300, fields: vec![] }])], ..data }
            .emit(&mut w);
        d.message(&w).unwrap();
        assert!(d.message(&bytes).is_err());
    }

    #[test]
    fn stream_lengths() {
        assert_eq!(stream_message_len(&[0, 10, 0, 16]), None);
        let mut m = vec![0, 10, 0, 20];
        m.resize(19, 0);
        assert_eq!(stream_message_len(&m), None);
        m.push(0);
        assert_eq!(stream_message_len(&m), Some(20));
        m[3] = 4;
        assert_eq!(stream_message_len(&m), None, "a length below the header never completes");
    }
}
