//! `imagestreams get isimage STREAM@DIGEST` and `get istag STREAM:TAG`: one image of a stream, or a tag's
//! current image, with its metadata (OpenShift's `Image` field names in `-o json|yaml`), or a table.

use std::{fmt::Write as _, io::Write};

use chrono::Utc;
use imagestreams_images_api::{
    human_size,
    view::{Image, ImageStreamImage, ImageStreamTag},
};
use serde::Serialize;

use super::{
    ClientError, Context,
    humanize::{ago, parse_time},
    output,
    tabwriter::TabWriter,
};
use crate::cli::{GetArgs, GetOutput};

/// The names of the ImageStreamImage resource.
const IMAGE_NAMES: [&str; 4] = [
    "isimage",
    "isimages",
    "imagestreamimage",
    "imagestreamimages",
];
/// The names of the ImageStreamTag resource.
const TAG_NAMES: [&str; 4] = ["istag", "istags", "imagestreamtag", "imagestreamtags"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Image,
    Tag,
}

impl Kind {
    fn of(resource: &str) -> Option<Kind> {
        let kind = resource.split_once('/').map_or(resource, |(k, _)| k);
        let is = |names: &[&str]| names.iter().any(|n| n.eq_ignore_ascii_case(kind));
        if is(&IMAGE_NAMES) {
            Some(Kind::Image)
        } else if is(&TAG_NAMES) {
            Some(Kind::Tag)
        } else {
            None
        }
    }

    /// Splits `STREAM@DIGEST` or `STREAM:TAG`.
    fn split(self, name: &str) -> Result<(&str, &str), ClientError> {
        let (separator, form) = match self {
            Kind::Image => ('@', "STREAM@DIGEST"),
            Kind::Tag => (':', "STREAM:TAG"),
        };
        name.split_once(separator)
            .filter(|(s, rest)| !s.is_empty() && !rest.is_empty())
            .ok_or_else(|| ClientError::usage(format!("{name:?} is not of the form {form}")))
    }
}

/// Whether `get` of `resource` is this module's.
pub fn handles(resource: &str) -> bool {
    Kind::of(resource).is_some()
}

/// Runs `get isimage|istag NAME...`.
pub async fn get(
    ctx: &mut Context,
    args: &GetArgs,
    out: &mut impl Write,
) -> Result<(), ClientError> {
    let kind =
        Kind::of(&args.resource).ok_or_else(|| ClientError::usage("not an image resource"))?;
    let names: Vec<&str> = match args.resource.split_once('/') {
        Some((_, name)) => std::iter::once(name)
            .chain(args.names.iter().map(String::as_str))
            .collect(),
        None => args.names.iter().map(String::as_str).collect(),
    };
    if names.is_empty() {
        let form = if kind == Kind::Image {
            "STREAM@DIGEST"
        } else {
            "STREAM:TAG"
        };
        return Err(ClientError::usage(format!(
            "name a {form}: images are listed by their streams (`get is`, `describe is`)"
        )));
    }
    if args.selector.is_some() || args.all_namespaces {
        return Err(ClientError::usage(
            "images are got by name: -l and -A do not apply",
        ));
    }
    let namespace = ctx.namespace().to_owned();
    let client = ctx.client().await?;
    let mut objects = Vec::with_capacity(names.len());
    for name in &names {
        let (stream, rest) = kind.split(name)?;
        objects.push(match kind {
            Kind::Image => {
                Object::Image(Box::new(client.get_image(&namespace, stream, rest).await?))
            }
            Kind::Tag => Object::Tag(Box::new(
                client
                    .get_image_stream_tag(&namespace, stream, rest)
                    .await?,
            )),
        });
    }
    let text = match args.output {
        // one object as itself; several as a `List`, as `oc get` prints them
        Some(GetOutput::Json) => output::objects(&objects, true, output::Format::Json)?,
        Some(GetOutput::Yaml) => output::objects(&objects, true, output::Format::Yaml)?,
        Some(GetOutput::Name) => objects.iter().map(|o| o.name_line() + "\n").collect(),
        _ => table(&objects, args.output == Some(GetOutput::Wide)),
    };
    out.write_all(text.as_bytes())?;
    Ok(())
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
enum Object {
    Image(Box<ImageStreamImage>),
    Tag(Box<ImageStreamTag>),
}

impl Object {
    fn name(&self) -> &str {
        match self {
            Object::Image(o) => &o.metadata.name,
            Object::Tag(o) => &o.metadata.name,
        }
    }

    fn image(&self) -> &Image {
        match self {
            Object::Image(o) => &o.image,
            Object::Tag(o) => &o.image,
        }
    }

    fn name_line(&self) -> String {
        match self {
            Object::Image(o) => format!("imagestreamimage.image.openshift.io/{}", o.metadata.name),
            Object::Tag(o) => format!("imagestreamtag.image.openshift.io/{}", o.metadata.name),
        }
    }
}

/// `NAME  IMAGE REFERENCE  PLATFORMS  SIZE  CREATED` (`-o wide` adds the layer count and the media type).
fn table(objects: &[Object], wide: bool) -> String {
    let now = Utc::now();
    let mut w = TabWriter::table();
    let header = if wide {
        "NAME\tIMAGE REFERENCE\tPLATFORMS\tSIZE\tCREATED\tLAYERS\tMEDIA TYPE"
    } else {
        "NAME\tIMAGE REFERENCE\tPLATFORMS\tSIZE\tCREATED"
    };
    let _ = writeln!(w, "{header}");
    for object in objects {
        let image = object.image();
        let metadata = image.docker_image_metadata.as_ref();
        let platforms = image.platforms().join(",");
        let size = metadata.map(|m| human_size(m.size)).unwrap_or_default();
        let created = metadata
            .and_then(|m| parse_time(&m.created))
            .map(|t| ago(t, now))
            .unwrap_or_default();
        let or_none = |s: String| if s.is_empty() { "<none>".to_owned() } else { s };
        let _ = write!(
            w,
            "{}\t{}\t{}\t{}\t{}",
            object.name(),
            image.docker_image_reference,
            or_none(platforms),
            or_none(size),
            or_none(created),
        );
        if wide {
            let _ = write!(
                w,
                "\t{}\t{}",
                image.docker_image_layers.len(),
                or_none(image.docker_image_manifest_media_type.clone())
            );
        }
        let _ = writeln!(w);
    }
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_and_names_read_like_oc() {
        assert_eq!(Kind::of("isimage"), Some(Kind::Image));
        assert_eq!(Kind::of("ImageStreamTags"), Some(Kind::Tag));
        assert_eq!(Kind::of("istag/app:1"), Some(Kind::Tag));
        assert_eq!(Kind::of("is"), None);
        assert_eq!(Kind::Tag.split("app:1").unwrap(), ("app", "1"));
        assert_eq!(
            Kind::Image.split("app@sha256:aa").unwrap(),
            ("app", "sha256:aa")
        );
        assert!(Kind::Tag.split("app").is_err());
        assert!(Kind::Image.split("@sha256:aa").is_err());
    }
}
