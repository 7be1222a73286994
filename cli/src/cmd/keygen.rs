//! `greenroom keygen FILE`: a new cluster secret for a convention, in a file only its owner
//! can read. Copy the file to every member; each is started with `--secret-file FILE`.

use std::path::Path;

use greenroom::convention::ClusterSecret;

use crate::CliError;

pub fn run(path: &Path) -> Result<(), CliError> {
    ClusterSecret::generate(path)?;
    println!(
        "wrote a new convention secret to {} (mode 0600); copy it to every member, and keep it out of logs and version control",
        path.display()
    );
    Ok(())
}
